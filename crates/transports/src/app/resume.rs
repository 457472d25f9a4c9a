//! A join that resumes from a place in the cluster's shared log (`since:
//! {log}`): on any node of a cluster in streams mode, the client gets what
//! the room had after that place, then is a member, with nothing missed
//! or given twice in between (the adapter holds back its deliveries until
//! the join is done).

use volna_hub::{Conn, HubError};

use super::{counted, Applied, Reply};

/// Joins `conn` to `room`, first sending it what the room had in the
/// shared log after `log`; `unrecoverable` when there is no shared log or
/// it no longer holds `log`.
pub(super) fn across_nodes(conn: &Conn, room: String, log: String) -> Applied {
    let hub = conn.hub().clone();
    if let Err(e) = volna_protocols::line::validate_room(&room) {
        return Applied::Now(counted(&hub, Err(HubError::from(e).into())));
    }
    let Some(adapter) = hub.adapter().filter(|a| a.owns_offset(&log)).cloned() else {
        return Applied::Now(counted(&hub, Err(HubError::Unrecoverable(room).into())));
    };
    let id = conn.id();
    let found = adapter.room_since(conn.nsp(), &room, &log);
    Applied::Later(Box::pin(async move {
        let outcome = match found.await {
            None => Err(HubError::Unrecoverable(room)),
            Some(restored) => {
                let joined = hub.join_given(id, &room, &restored.missed);
                (restored.release)();
                joined
            }
        };
        counted(&hub, outcome.map(Reply::Join).map_err(Into::into))
    }))
}
