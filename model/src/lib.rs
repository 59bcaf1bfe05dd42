//! quiesce's model: protocol specs, the Stateright model that interprets them,
//! and the checker that proves or refutes them.

pub mod check;
pub mod engine;
pub mod explain;
pub mod fixed;
pub mod live;
pub mod model;
pub mod mutate;
pub mod replay;
pub mod spec;
pub mod view;

pub use check::{check_spec, CheckOptions, KindReport, SpecReport};
pub use model::Quiesce;
pub use spec::{Spec, SpecError, SpecErrors};
