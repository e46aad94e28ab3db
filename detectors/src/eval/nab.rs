//! NAB v1.1 scoring.
