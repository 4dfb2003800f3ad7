//! Protocol selection (istio `pkg/config/protocol` and kube conversion):
//! a Service port's `appProtocol` wins, else the port name's prefix before
//! the first `-`; anything unrecognised is auto-detected (sniffed).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tls,
    Tcp,
    Mongo,
    Redis,
    Mysql,
    Udp,
    /// Not declared: istiod sniffs HTTP vs TCP.
    Unsupported,
}

impl Protocol {
    /// Istio's case-insensitive protocol names.
    pub fn parse(s: &str) -> Protocol {
        match s.to_ascii_lowercase().as_str() {
            "http" => Protocol::Http,
            "http2" | "kubernetes.io/h2c" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "https" | "kubernetes.io/wss" => Protocol::Https,
            "tls" => Protocol::Tls,
            "tcp" => Protocol::Tcp,
            "mongo" => Protocol::Mongo,
            "redis" => Protocol::Redis,
            "mysql" => Protocol::Mysql,
            "udp" => Protocol::Udp,
            "kubernetes.io/ws" => Protocol::Http,
            _ => Protocol::Unsupported,
        }
    }

    /// Kubernetes Service port: `appProtocol`, else name prefix (`http-web`
    /// → HTTP; `grpc-web` is its own protocol), UDP ports are UDP.
    pub fn from_service_port(
        name: Option<&str>,
        app_protocol: Option<&str>,
        udp: bool,
    ) -> Protocol {
        if udp {
            return Protocol::Udp;
        }
        if let Some(ap) = app_protocol {
            let p = Protocol::parse(ap);
            if p != Protocol::Unsupported {
                return p;
            }
        }
        let Some(name) = name else {
            return Protocol::Unsupported;
        };
        let lower = name.to_ascii_lowercase();
        if lower == "grpc-web" || lower.starts_with("grpc-web-") {
            return Protocol::GrpcWeb;
        }
        let prefix = lower.split('-').next().unwrap_or("");
        Protocol::parse(prefix)
    }

    /// HTTP family: routed by the HTTP connection manager.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }

    /// Upstream speaks HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }

    /// `IsTLS`: TLS or HTTPS, routed by SNI (`tls:` routes).
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }

    /// Proxied as opaque TCP.
    pub fn is_tcp(self) -> bool {
        matches!(
            self,
            Protocol::Https
                | Protocol::Tls
                | Protocol::Tcp
                | Protocol::Mongo
                | Protocol::Redis
                | Protocol::Mysql
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-Web",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Mongo => "Mongo",
            Protocol::Redis => "Redis",
            Protocol::Mysql => "MySQL",
            Protocol::Udp => "UDP",
            Protocol::Unsupported => "UnsupportedProtocol",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_app_protocol() {
        assert_eq!(
            Protocol::from_service_port(Some("http-web"), None, false),
            Protocol::Http
        );
        assert_eq!(
            Protocol::from_service_port(Some("tcp-web"), None, false),
            Protocol::Tcp
        );
        assert_eq!(
            Protocol::from_service_port(Some("http"), None, false),
            Protocol::Http
        );
        assert_eq!(
            Protocol::from_service_port(Some("web"), None, false),
            Protocol::Unsupported
        );
        assert_eq!(
            Protocol::from_service_port(Some("HTTP2-x"), None, false),
            Protocol::Http2
        );
        assert_eq!(
            Protocol::from_service_port(Some("grpc-web"), None, false),
            Protocol::GrpcWeb
        );
        assert_eq!(
            Protocol::from_service_port(Some("web"), Some("tcp"), false),
            Protocol::Tcp
        );
        assert_eq!(
            Protocol::from_service_port(Some("http"), Some("tcp"), false),
            Protocol::Tcp,
            "appProtocol wins"
        );
        assert_eq!(
            Protocol::from_service_port(None, None, false),
            Protocol::Unsupported
        );
        assert_eq!(
            Protocol::from_service_port(Some("http"), None, true),
            Protocol::Udp
        );
    }
}
