//! Multivariate: several metrics of one workload judged jointly.
