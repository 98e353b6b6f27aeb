//! The engine's one error type and how it maps onto core's [`BackendError`].

use imagegate_core::BackendError;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A tensor operation failed (shape mismatch, out of memory, bad weights).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading a model folder or file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A model file is present but malformed (bad JSON, unknown family).
    #[error("bad model file {path}: {message}")]
    BadModel {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Weight files are not installed.
    #[error("weights for {model} are missing: {missing} (looked in {looked_in})")]
    MissingWeights {
        /// Model id.
        model: String,
        /// Missing files, comma separated.
        missing: String,
        /// The folder(s) searched.
        looked_in: String,
    },
    /// The request asks for something the engine cannot do.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// Offending field.
        field: String,
        /// What is allowed.
        message: String,
    },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Encoding the output image failed.
    #[error("image encoding: {0}")]
    Encode(String),
    /// The caller cancelled the task.
    #[error("cancelled")]
    Cancelled,
    /// The engine thread is gone (panicked or shut down).
    #[error("engine thread stopped")]
    Stopped,
}

impl EngineError {
    /// An [`EngineError::Invalid`] for `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.to_string(), message: message.into() }
    }

    /// A [`EngineError::BadModel`] for `path`.
    pub fn bad_model(path: impl AsRef<std::path::Path>, message: impl std::fmt::Display) -> Self {
        Self::BadModel { path: path.as_ref().display().to_string(), message: message.to_string() }
    }
}

/// Engine result.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl From<EngineError> for BackendError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::MissingWeights { model, missing, looked_in } => BackendError::MissingWeights { model, missing, looked_in },
            EngineError::Invalid { field, message } => BackendError::Invalid { field, message },
            EngineError::Cancelled => BackendError::Cancelled,
            EngineError::Stopped => BackendError::Unavailable("the local engine has stopped".to_string()),
            other => BackendError::Internal(other.to_string()),
        }
    }
}
