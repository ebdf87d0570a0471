//! Who may act through the control API: local programs, not web pages.
//!
//! A loopback API is reachable from every page the operator's browser opens: an
//! `<img src="http://127.0.0.1:22106/stop/all">` or a form POST needs no CORS permission
//! (the answer is unreadable, the action is done), and a DNS-rebinding page
//! (`evil.example` re-resolved to 127.0.0.1) can even read the answers. Browsers say where
//! a request comes from; supergoctl, curl and scripts send none of these headers. So a
//! request is refused (403, saying why) when:
//! - its `Host` is neither an IP literal, `localhost`, nor the host of the configured control
//!   address (DNS rebinding: the page's own name is in `Host`);
//! - it has an `Origin` other than the control address itself, that is other than
//!   `http://` + its own `Host` or `http://` + the address supergo listens on (a page that
//!   supergo itself served is the only same-origin page there can be);
//! - its `Sec-Fetch-Site` is anything but `same-origin` or `none` (`none`: the operator typed
//!   the URL): `cross-site` and `same-site` are other pages.
//!
//! A request without `Host` (HTTP/1.0) is let through: browsers always send one. Tools that
//! serve on localhost do the same checks after DNS-rebinding reports (Jupyter's
//! `allow_remote_access`, webpack-dev-server's `allowedHosts`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::parse::Provenance;
use crate::reply::Reply;

const LOCAL_ONLY: &str = "supergo's control API only answers local clients";

/// The control API's answer to "is this request from a local client?".
#[derive(Debug, Clone)]
pub struct LocalOnly {
    /// The address the control API listens on, as an origin (`http://127.0.0.1:22106`).
    listen_origin: String,
    /// The host of the configured control address when it is a name (`myhost` of
    /// `myhost:22106`), lowercase: a client may call the API by that name.
    configured_host: Option<String>,
}

impl LocalOnly {
    /// `configured` is the control address as the operator wrote it (`localhost:22106`,
    /// `:22106`); `listening` is where the listener is bound.
    pub fn new(configured: &str, listening: SocketAddr) -> LocalOnly {
        let configured_host = split_host(configured.trim())
            .map(|(host, _)| host.to_ascii_lowercase())
            .filter(|host| !host.is_empty() && parse_ip(host).is_none());
        LocalOnly {
            listen_origin: format!("http://{listening}"),
            configured_host,
        }
    }

    /// `Ok` for a local client's request; otherwise the 403 that says what was refused and
    /// why.
    pub fn check(&self, from: &Provenance) -> Result<(), Reply> {
        let host = from.host.as_deref().filter(|h| !h.is_empty());
        if let Some(host) = host {
            if !self.host_allowed(host) {
                let names = match &self.configured_host {
                    Some(name) => format!("an IP address, localhost or {name}"),
                    None => "an IP address or localhost".to_string(),
                };
                return Err(refused(format!(
                    "request for host {host:?}, which is not this machine \
                     (a DNS-rebinding web page?); {LOCAL_ONLY}, called by {names}"
                )));
            }
        }
        if let Some(origin) = &from.origin {
            let same_origin = |o: &str| origin.eq_ignore_ascii_case(o);
            let allowed = same_origin(&self.listen_origin)
                || host.is_some_and(|h| same_origin(&format!("http://{h}")));
            if !allowed {
                return Err(refused(format!(
                    "cross-site request (Origin {origin}); {LOCAL_ONLY}"
                )));
            }
        }
        if let Some(site) = &from.fetch_site {
            let what = match site.to_ascii_lowercase().as_str() {
                "same-origin" | "none" => return Ok(()),
                "cross-site" => "cross-site request",
                "same-site" => "same-site request (from another page of this site)",
                _ => "request from a web page",
            };
            return Err(refused(format!(
                "{what} (Sec-Fetch-Site: {site}); {LOCAL_ONLY}"
            )));
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some((name, _port)) = split_host(host) else {
            return false;
        };
        parse_ip(name).is_some()
            || name.eq_ignore_ascii_case("localhost")
            || self
                .configured_host
                .as_deref()
                .is_some_and(|configured| name.eq_ignore_ascii_case(configured))
    }
}

fn refused(why: String) -> Reply {
    Reply::error(403, format!("refused: {why}"))
}

/// `host[:port]` or `[v6][:port]` into the host (brackets off) and the port text, if any;
/// `None` when it is neither (a bare IPv6 address, a bad port).
fn split_host(text: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        match after {
            "" => (inside, None),
            _ => (inside, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port_ok = port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()));
    port_ok.then_some((host, port))
}

/// An IPv4 literal (`127.0.0.1`) or, from inside brackets, an IPv6 one (`::1`).
fn parse_ip(host: &str) -> Option<IpAddr> {
    host.parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .or_else(|_| host.parse::<Ipv6Addr>().map(IpAddr::V6))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(configured: &str) -> LocalOnly {
        let listening = "127.0.0.1:22106".parse().expect("an address");
        LocalOnly::new(configured, listening)
    }

    fn from(host: Option<&str>, origin: Option<&str>, site: Option<&str>) -> Provenance {
        Provenance {
            host: host.map(str::to_string),
            origin: origin.map(str::to_string),
            fetch_site: site.map(str::to_string),
        }
    }

    fn verdict(p: &LocalOnly, host: Option<&str>, origin: Option<&str>, site: Option<&str>) -> u16 {
        match p.check(&from(host, origin, site)) {
            Ok(()) => 200,
            Err(reply) => reply.http,
        }
    }

    #[test]
    fn local_clients_pass() {
        let p = policy("127.0.0.1:22106");
        for host in [
            None,
            Some(""),
            Some("127.0.0.1:22106"),
            Some("127.0.0.1"),
            Some("10.1.2.3:80"),
            Some("localhost:22106"),
            Some("LOCALHOST"),
            Some("[::1]:22106"),
            Some("[::1]"),
        ] {
            assert_eq!(verdict(&p, host, None, None), 200, "Host {host:?}");
        }
        let host = Some("localhost:22106");
        assert_eq!(verdict(&p, host, Some("http://localhost:22106"), None), 200);
        assert_eq!(verdict(&p, None, Some("http://127.0.0.1:22106"), None), 200);
        assert_eq!(verdict(&p, host, None, Some("same-origin")), 200);
        assert_eq!(verdict(&p, host, None, Some("none")), 200);
    }

    #[test]
    fn web_pages_are_refused() {
        let p = policy("127.0.0.1:22106");
        for host in [
            "evil.example:22106",
            "evil.example",
            "::1",
            "a:b",
            "127.0.0.1.evil.example",
        ] {
            assert_eq!(verdict(&p, Some(host), None, None), 403, "Host {host:?}");
        }
        let host = Some("127.0.0.1:22106");
        for origin in [
            "http://evil.example",
            "null",
            "https://127.0.0.1:22106",
            "http://127.0.0.1:1",
        ] {
            assert_eq!(
                verdict(&p, host, Some(origin), None),
                403,
                "Origin {origin:?}"
            );
        }
        for site in ["cross-site", "same-site", "Cross-Site", "other"] {
            assert_eq!(
                verdict(&p, host, None, Some(site)),
                403,
                "Sec-Fetch-Site {site:?}"
            );
        }
    }

    #[test]
    fn the_configured_host_name_is_local() {
        let p = policy("ctl.internal:22106");
        assert_eq!(verdict(&p, Some("CTL.internal:22106"), None, None), 200);
        assert_eq!(verdict(&p, Some("other.internal:22106"), None, None), 403);
        assert_eq!(policy(":22106").configured_host, None);
        assert_eq!(policy("[::1]:22106").configured_host, None);
    }

    #[test]
    fn refusals_say_what_and_why() {
        let p = policy("127.0.0.1:22106");
        let reply = p
            .check(&from(
                Some("127.0.0.1:22106"),
                Some("http://evil.example"),
                Some("cross-site"),
            ))
            .expect_err("a cross-site request is refused");
        assert_eq!(
            reply.message,
            "refused: cross-site request (Origin http://evil.example); \
             supergo's control API only answers local clients"
        );
        let reply = p
            .check(&from(Some("evil.example:22106"), None, None))
            .expect_err("a foreign Host is refused");
        assert!(
            reply.message.contains("\"evil.example:22106\""),
            "{}",
            reply.message
        );
    }
}
