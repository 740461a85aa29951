//! `mixtures`: from prepared datasets to a training mixture. Recipes ([`recipe`]), the planner
//! with its pre-training overlap floor ([`plan`]), the blended document order and its exports
//! ([`build`]), and with the `audit` feature the polars audit of what a mixture really holds
//! ([`audit`]) and its HTML page ([`audit_page`]). Document subsets of a domain (where, select,
//! buckets, rehydrate) come from [`select`].

#[cfg(feature = "audit")]
pub mod audit;
#[cfg(feature = "audit")]
pub mod audit_page;
pub mod build;
pub mod plan;
pub mod recipe;
pub mod select;
