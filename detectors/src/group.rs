//! Group outliers: one member of a group behaving unlike its siblings.
