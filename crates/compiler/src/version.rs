//! The Istio version a proxy reports: defined with the tables (the proxy
//! reads it for the Envoy behaviours that changed between releases).

pub use meshsim_tables::version::IstioVersion;
