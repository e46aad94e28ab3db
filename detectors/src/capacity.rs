//! Capacity exhaustion: the time until a forecast crosses a limit.
