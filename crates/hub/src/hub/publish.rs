//! Publishing: a message gets its room's next offset and a timestamp, is
//! kept in the room's history and queued to every member under the room's
//! lock, then handed to the cluster adapter.

use std::sync::Arc;

use super::deliver::Encoder;
use super::error::HubError;
use super::state::Hub;
use crate::adapter::Outgoing;
use crate::event::{ConnId, Data, Event, MemberInfo, Message};
use crate::stats::Stats;

impl Hub {
    /// Publishes to `room` on behalf of connection `id`, which must be a
    /// member. For work that finishes after the request that started it
    /// (e.g. an image processed on a worker pool); otherwise use
    /// [`Conn::publish`](crate::Conn::publish).
    pub fn publish_as(
        &self,
        id: ConnId,
        nsp: &str,
        room: &str,
        data: Data,
        include_self: bool,
    ) -> Result<Arc<Message>, HubError> {
        self.publish(id, nsp, room, None, data, include_self)
    }

    pub(super) fn publish(
        &self,
        id: ConnId,
        nsp: &str,
        room_name: &str,
        event: Option<Arc<str>>,
        data: Data,
        include_self: bool,
    ) -> Result<Arc<Message>, HubError> {
        let room = self
            .room(nsp, room_name)
            .ok_or_else(|| HubError::NoSuchRoom(room_name.to_string()))?;
        let mut rs = room.state.lock().unwrap();
        let Some(sender) = rs.members.get(&id) else {
            return Err(HubError::NotMember(room_name.to_string()));
        };
        let from = MemberInfo {
            id,
            name: sender.name.clone(),
        };
        let ts = crate::now_ms().max(rs.last_ts);
        let msg = Arc::new(Message {
            nsp: room.nsp.clone(),
            room: room.name.clone(),
            offset: rs.next_offset,
            ts,
            from,
            data,
            event,
        });
        rs.next_offset += 1;
        rs.last_ts = ts;
        if self.inner.config.history_len > 0 {
            if rs.history.len() == self.inner.config.history_len {
                rs.history.pop_front();
            }
            rs.history.push_back(msg.clone());
        }
        let mut enc = Encoder::new(Event::Message(&msg));
        let except = if include_self { None } else { Some(id) };
        self.deliver(&mut enc, rs.members.iter(), except);
        if let Some(adapter) = self.inner.adapter.get() {
            adapter.forward(Outgoing::Message(msg.clone()));
        }
        drop(rs);
        Stats::bump(&self.inner.stats.messages);
        Ok(msg)
    }
}
