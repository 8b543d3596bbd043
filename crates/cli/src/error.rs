//! The CLI's errors and their exit codes.

use accord_client::ClientError;
use std::fmt;

#[derive(Debug)]
pub enum CliError {
    /// Bad arguments or input: exit 2.
    Input(String),
    /// The server refused the request: exit 2 for 4xx, 1 otherwise.
    Api(ClientError),
    /// The ledger failed verification: exit 1.
    Tampered(String),
    /// Anything else: exit 1.
    Internal(anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 2,
            CliError::Api(e) => match e.status() {
                Some(s) if (400..500).contains(&s) => 2,
                _ => 1,
            },
            CliError::Tampered(_) | CliError::Internal(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(m) => f.write_str(m),
            CliError::Api(e) => write!(f, "{e}"),
            CliError::Tampered(m) => write!(f, "TAMPERED: {m}"),
            CliError::Internal(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::Api(e)
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Internal(e)
    }
}

impl From<accord_storage::StoreError> for CliError {
    fn from(e: accord_storage::StoreError) -> Self {
        match e {
            accord_storage::StoreError::BadUrl(m) => CliError::Input(m),
            other => CliError::Internal(other.into()),
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;
