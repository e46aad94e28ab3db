//! Change points: level and variance shifts.
