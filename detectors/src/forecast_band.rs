//! Forecast band: a point outside the forecast's prediction interval scores.
