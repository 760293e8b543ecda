//! What `queue.url` names (SPEC §16): one Redis server (`redis://`,
//! `rediss://`, read by redis-rs itself), or a master watched by Redis
//! Sentinel:
//!
//! ```text
//! redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/MASTER[/DB]
//! ```
//!
//! The hosts are the sentinels (port 26379 when left out), `MASTER` is the
//! name the sentinels monitor it under, `DB` the database number (0). The
//! credentials, if any, are the master's (its `requirepass` or ACL user):
//! the sentinels are asked without them.
//!
//! Or a Redis Cluster, found from any of its nodes (seeds; port 6379 when
//! left out; the credentials are the nodes'):
//!
//! ```text
//! redis+cluster://[user[:password]@]host[:port][,host[:port]...]
//! ```
//!
//! Parsing is pure, so config load (`config/compile.rs`) checks a URL with
//! the same code the queue opens it with. No error ever repeats the
//! credentials: messages name the part that is wrong, not the URL.

use percent_encoding::percent_decode_str;

/// The port a sentinel listens on when the URL gives none.
pub const SENTINEL_PORT: u16 = 26379;

/// The port a cluster node listens on when the URL gives none.
pub const CLUSTER_PORT: u16 = 6379;

const SENTINEL_SCHEME: &str = "redis+sentinel://";
const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A parsed `queue.url`. `Debug` never shows a server URL (it may hold a
/// password).
#[derive(Clone, PartialEq, Eq)]
pub enum Address {
    /// One server; the URL as given, for redis-rs.
    Server(String),
    /// A master found through its sentinels.
    Sentinel(SentinelAddress),
    /// A Redis Cluster, found from its seed nodes.
    Cluster(ClusterAddress),
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Server(_) => f.write_str("Server(..)"),
            Address::Sentinel(s) => f.debug_tuple("Sentinel").field(s).finish(),
            Address::Cluster(c) => f.debug_tuple("Cluster").field(c).finish(),
        }
    }
}

/// The parts of a `redis+sentinel://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelAddress {
    /// The sentinels, (host, port), in the order given.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the master under.
    pub master: String,
    /// Database number on the master.
    pub db: i64,
    /// The master's ACL user and password (percent-decoded).
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Never the password, whatever prints the address.
impl std::fmt::Debug for SentinelAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelAddress")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The parts of a `redis+cluster://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterAddress {
    /// The seed nodes, (host, port), in the order given.
    pub nodes: Vec<(String, u16)>,
    /// The nodes' ACL user and password (percent-decoded).
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Never the password, whatever prints the address.
impl std::fmt::Debug for ClusterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAddress")
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Address {
    /// Read `queue.url`; the error says what is wrong and how to write it.
    pub fn parse(url: &str) -> Result<Address, String> {
        if let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) {
            return parse_sentinel(rest).map(Address::Sentinel);
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(Address::Server(url.to_string()));
        }
        if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
            return parse_cluster(rest).map(Address::Cluster);
        }
        Err(format!(
            "it must start with redis://, rediss://, redis+sentinel:// or redis+cluster:// \
             (e.g. `redis://127.0.0.1:6379/0`, `{SENTINEL_SCHEME}s1:26379,s2:26379/mymaster/0` \
             or `{CLUSTER_SCHEME}n1:6379,n2:6379`)"
        ))
    }
}

/// `[user[:password]@]rest`, the credentials percent-decoded. They end at
/// the last '@' (a password may hold one, or a '/' or ',', percent-encoded
/// or not), so they are cut off before anything else is read: no part of a
/// password can reach a message about hosts.
type Credentials = (Option<String>, Option<String>);
fn split_credentials<'a>(rest: &'a str, kind: &str) -> Result<(Credentials, &'a str), String> {
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let Some(info) = userinfo else {
        return Ok(((None, None), after));
    };
    let (user, pass) = match info.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (info, None),
    };
    let decode = |s: &str, what: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("the {what} in the {kind} URL is not UTF-8 once decoded"))
    };
    let user = decode(user, "user name")?;
    let pass = pass.map(|p| decode(p, "password")).transpose()?;
    Ok((
        (
            (!user.is_empty()).then_some(user),
            pass.filter(|p| !p.is_empty()),
        ),
        after,
    ))
}

fn parse_cluster(rest: &str) -> Result<ClusterAddress, String> {
    let form = format!("write it as {CLUSTER_SCHEME}host:port[,host:port...]");
    if rest.contains(['?', '#']) {
        return Err(format!("a Cluster URL takes no query or fragment; {form}"));
    }
    let ((username, password), after) = split_credentials(rest, "Cluster")?;
    let hosts = match after.split_once('/') {
        None => after,
        Some((hosts, "")) => hosts,
        Some(_) => {
            return Err(format!(
                "a Cluster URL has no path: a cluster has one database (0); {form}"
            ));
        }
    };
    let mut nodes = Vec::new();
    for host in hosts.split(',') {
        nodes.push(host_port(host.trim(), CLUSTER_PORT, "cluster node", &form)?);
    }
    Ok(ClusterAddress {
        nodes,
        username,
        password,
    })
}

fn parse_sentinel(rest: &str) -> Result<SentinelAddress, String> {
    let form = format!("write it as {SENTINEL_SCHEME}host:port[,host:port...]/MASTER[/DB]");
    if rest.contains(['?', '#']) {
        return Err(format!("a Sentinel URL takes no query or fragment; {form}"));
    }
    let ((username, password), after) = split_credentials(rest, "Sentinel")?;
    let (hosts, path) = after.split_once('/').unwrap_or((after, ""));
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        sentinels.push(host_port(host.trim(), SENTINEL_PORT, "sentinel", &form)?);
    }
    let mut parts = path.split('/');
    let master = parts.next().unwrap_or_default();
    if master.is_empty() {
        return Err(format!(
            "the Sentinel URL names no master (the name in the sentinels' `sentinel monitor` \
             line); {form}"
        ));
    }
    let master = percent_decode_str(master)
        .decode_utf8()
        .map_err(|_| "the master name in the Sentinel URL is not UTF-8 once decoded".to_string())?
        .into_owned();
    let db = match parts.next() {
        None | Some("") => 0,
        Some(n) => n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            format!("the database `{n}` in the Sentinel URL is not a number 0 or more; {form}")
        })?,
    };
    if let Some(extra) = parts.find(|p| !p.is_empty()) {
        return Err(format!(
            "the Sentinel URL has `{extra}` after the database number; {form}"
        ));
    }
    Ok(SentinelAddress {
        sentinels,
        master,
        db,
        username,
        password,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_port(text: &str, default: u16, what: &str, form: &str) -> Result<(String, u16), String> {
    if text.is_empty() {
        return Err(format!("the URL has an empty {what} address; {form}"));
    }
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{what} address `{text}` opens `[` without `]`; {form}"))?;
        match after {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => {
                    return Err(format!("{what} address `{text}` is not host:port; {form}"));
                }
            },
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ', '[', ']']) {
        return Err(format!(
            "{what} address `{text}` has no usable host; {form}"
        ));
    }
    let port = match port {
        None => default,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            format!("{what} address `{text}` has no valid port (1-65535); {form}")
        })?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelAddress {
        match Address::parse(url).unwrap() {
            Address::Sentinel(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn single_server_urls_pass_through() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "rediss://:pw@h:6380",
            "redis://h",
        ] {
            assert_eq!(Address::parse(url).unwrap(), Address::Server(url.into()));
        }
    }

    #[test]
    fn sentinel_url_in_full() {
        let s = sentinel("redis+sentinel://app:p%40ss@s1:26379,s2:26380,[::1]:26381/mymaster/3");
        assert_eq!(
            s.sentinels,
            [
                ("s1".to_string(), 26379),
                ("s2".to_string(), 26380),
                ("::1".to_string(), 26381)
            ]
        );
        assert_eq!(s.master, "mymaster");
        assert_eq!(s.db, 3);
        assert_eq!(s.username.as_deref(), Some("app"));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert!(!format!("{s:?}").contains("p@ss"));
    }

    #[test]
    fn cluster_url_in_full_and_with_defaults() {
        let Address::Cluster(c) =
            Address::parse("redis+cluster://app:p%2Cw@n1:7001, n2 ,[::1]:7003/").unwrap()
        else {
            panic!("not a cluster address")
        };
        assert_eq!(
            c.nodes,
            [
                ("n1".to_string(), 7001),
                ("n2".to_string(), CLUSTER_PORT),
                ("::1".to_string(), 7003)
            ]
        );
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.password.as_deref(), Some("p,w"));
        assert!(!format!("{c:?}").contains("p,w"));
    }

    #[test]
    fn sentinel_url_defaults() {
        let s = sentinel("redis+sentinel://s1/mymaster");
        assert_eq!(s.sentinels, [("s1".to_string(), SENTINEL_PORT)]);
        assert_eq!((s.db, s.username, s.password), (0, None, None));
        let s = sentinel("redis+sentinel://:secret@s1:1,s2:2/m/");
        assert_eq!((s.username, s.password.as_deref()), (None, Some("secret")));
        assert_eq!(s.db, 0);
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong_without_the_password() {
        for (url, says) in [
            ("redis+sentinel://s1:26379", "names no master"),
            ("redis+sentinel://s1:26379/", "names no master"),
            ("redis+sentinel:///mymaster", "empty sentinel address"),
            ("redis+sentinel://s1:26379,,s2/m", "empty sentinel address"),
            ("redis+sentinel://s1:port/m", "no valid port"),
            ("redis+sentinel://s1:0/m", "no valid port"),
            ("redis+sentinel://s1:99999/m", "no valid port"),
            ("redis+sentinel://:26379/m", "no usable host"),
            ("redis+sentinel://[::1/m", "without `]`"),
            ("redis+sentinel://s1/m/x", "not a number"),
            ("redis+sentinel://s1/m/-1", "not a number"),
            ("redis+sentinel://s1/m/0/more", "after the database"),
            ("redis+sentinel://s1/m?timeout=1", "no query"),
            ("redis+cluster://h1:1,,h2:2", "empty cluster node address"),
            ("redis+cluster://h1:x", "no valid port"),
            ("redis+cluster://h1:1/0", "has no path"),
            ("redis+cluster://h1?x=1", "no query"),
            ("http://h", "must start with redis://"),
        ] {
            let with_password = url.replacen("://", "://u:hunter2@", 1);
            for url in [url.to_string(), with_password] {
                let err = Address::parse(&url).unwrap_err();
                assert!(err.contains(says), "{url}: {err}");
                assert!(!err.contains("hunter2"), "{url}: {err}");
            }
        }
    }
}
