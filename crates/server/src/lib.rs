//! The onlineca HTTPS service: configuration, TLS, authentication, the API routes,
//! and the error-to-status map.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod ca_token;
pub mod client_cert;
pub mod config;
pub mod credential_cache;
pub mod credentials;
pub mod crl;
pub mod error;
pub mod est;
pub mod issuance;
pub mod ldap;
pub mod lockout;
pub mod metrics;
pub mod password_pool;
pub mod proxy_protocol;
pub mod ratelimit;
pub mod renewal;
pub mod retriever;
pub mod routes;
pub mod serve;
pub mod state;
pub mod tls;
pub mod user_gate;

pub use config::{Config, ConfigError};
pub use error::ApiError;
pub use serve::{bind, serve};
pub use state::{AppState, StartError};
