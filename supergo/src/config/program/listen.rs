//! A program's sockets: `listen_addrs` (each parsed, none twice) and the `LISTEN_FDNAMES`
//! name of each (`listen_names`, or the program's name).

use crate::config::section::Section;
use crate::config::tree::Node;
use crate::config::ConfigError;
use crate::listener::ListenAddr;

/// `listen_addrs` and one `LISTEN_FDNAMES` name for each.
pub(super) fn listeners(
    s: &Section,
    name: &str,
) -> Result<(Vec<ListenAddr>, Vec<String>), ConfigError> {
    let addrs = s
        .array(
            "listen_addrs",
            "an array of addresses, like [\":8080\"]",
            |node| {
                let text =
                    s.as_string("listen_addrs", node, "an address string, like \":8080\"")?;
                ListenAddr::parse(&text, &s.file.dir)
                    .map_err(|err| s.item_error("listen_addrs", node, err))
            },
        )?
        .unwrap_or_default();
    if let Some(twice) = addrs
        .iter()
        .enumerate()
        .find(|(i, addr)| addrs[..*i].contains(addr))
    {
        return Err(s.key_error("listen_addrs", format!("lists {} twice", twice.1)));
    }
    let names = match s.node("listen_names") {
        None => vec![name.to_string(); addrs.len()],
        Some(node) => listen_names(s, node, addrs.len())?,
    };
    Ok((addrs, names))
}

/// systemd's rule for fd names (`sd_listen_fds_with_names`): 1 to 255 printable ASCII
/// characters, no `:` (the separator in `LISTEN_FDNAMES`).
fn listen_names(s: &Section, node: &Node, count: usize) -> Result<Vec<String>, ConfigError> {
    let names = s
        .array(
            "listen_names",
            "an array of names, one per listen_addrs entry",
            |item| {
                let name = s.as_string("listen_names", item, "a string")?;
                let printable = name.chars().all(|c| c.is_ascii_graphic() || c == ' ');
                if name.is_empty() || name.len() > 255 || !printable || name.contains(':') {
                    let why = "must be 1 to 255 printable ASCII characters without `:`";
                    return Err(s.item_error(
                        "listen_names",
                        item,
                        format!("entry {name:?} {why}"),
                    ));
                }
                Ok(name)
            },
        )?
        .unwrap_or_default();
    if names.len() != count {
        let message = format!(
            "has {} names for {count} listen_addrs: give one name per address",
            names.len()
        );
        return Err(s.item_error("listen_names", node, message));
    }
    Ok(names)
}
