//! Accurate distributions for the `metrics` facade.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod sketch;
pub mod window;
