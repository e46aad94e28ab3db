//! Model drift: PSI and Kolmogorov-Smirnov between a reference and a current distribution.
