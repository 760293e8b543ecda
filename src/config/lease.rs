//! Target timeouts against `queue.lease` (SPEC §11, "leases outlive their
//! work"). A worker renews a job's lease while its request is in flight,
//! but a timeout at or above the lease means one slow renewal (or a
//! replica pausing) lets the lease lapse mid-request, and another worker
//! leases and sends the same delivery again. So config refuses it, with
//! the position of the timeout that breaks the rule.

use std::time::Duration;

use super::error::Pos;
use super::leaf::Ctx;

/// `queue.lease` and where it was written (`None`: the default).
pub(crate) struct Lease {
    /// The lease length.
    pub value: Duration,
    /// Where `queue.lease` was written; `None` when it is the default.
    pub pos: Option<Pos>,
}

/// A target `timeout` must stay below `queue.lease`: a request still in
/// flight when its lease runs out would be leased and sent again by
/// another worker (SPEC §11, "leases outlive their work").
pub(crate) fn check_timeout(timeout: Duration, pos: &Pos, lease: &Lease, ctx: &mut Ctx<'_>) {
    if timeout >= lease.value {
        ctx.error(
            pos,
            format!(
                "timeout {} is not below queue.lease {}: a request outliving its lease would be sent again by another worker; make the timeout shorter or raise `queue.lease`",
                humantime(timeout),
                humantime(lease.value)
            ),
        );
    }
}

/// A duration as a user would write it (`30s`, `1500ms`).
fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::humantime;
    use std::time::Duration;

    #[test]
    fn durations_show_as_written() {
        assert_eq!(humantime(Duration::from_secs(30)), "30s");
        assert_eq!(humantime(Duration::from_millis(2900)), "2900ms");
    }
}
