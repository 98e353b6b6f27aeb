//! imagegate-core: the pure domain of imagegate.
//!
//! Everything here is data and functions without I/O: the validated
//! [`TaskSpec`] every dialect converts into, the model [`catalog`], the error
//! code table, [`pricing`] (quotes and plans), prompt enhancement and the
//! [`Backend`] trait that the local engine and upstream channels implement.

pub mod backend;
pub mod catalog;
pub mod error;
pub mod pricing;
pub mod prompt;
pub mod routing;
pub mod sampler;
pub mod seconds;
pub mod size;
pub mod spec;
pub mod style;
pub mod task;
pub mod workflow;

pub use backend::{Backend, BackendError, BackendRegistry, CancelFlag, GeneratedImage, Generation, ModerationStage, Progress, ProgressSink};
pub use catalog::{Catalog, Family, ModelEntry};
pub use error::{AppError, ErrorCode};
pub use pricing::{Breakdown, Plan, PlanTable, PriceList, Quote, UnitPrice, quote};
pub use routing::{Locality, Routing, RoutingPolicy};
pub use sampler::Sampler;
pub use size::Size;
pub use spec::{ImageFormat, InitImage, LoraSpec, PromptPart, TaskSpec};
pub use task::{TaskState, TaskView};
pub use workflow::{Workflow, WorkflowSet};
