//! Link events: an rtnetlink socket subscribed to `RTNLGRP_LINK`, which
//! the kernel tells of every interface that appears, changes or goes in
//! the socket's namespace. The control plane uses it to attach an uplink
//! again when its interface returns; it never runs on the packet path.

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};

use super::{NetlinkError, RECV_BUF_LEN};

/// What a link notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// An interface appeared or changed (`RTM_NEWLINK`).
    New {
        /// Its index.
        index: u32,
        /// Its name.
        name: String,
    },
    /// An interface went (`RTM_DELLINK`).
    Gone {
        /// Its index.
        index: u32,
        /// Its name.
        name: String,
    },
    /// Notifications were lost (the socket's buffer overflowed, or one
    /// could not be read): whoever follows links must look at them again.
    Lost,
}

/// A blocking socket that receives link notifications (see the module
/// docs). Subscribed when opened: nothing that happens after
/// [`LinkWatcher::open`] returns is missed without a [`LinkEvent::Lost`].
#[derive(Debug)]
pub struct LinkWatcher {
    sock: Socket,
    buf: Vec<u8>,
}

impl LinkWatcher {
    /// Opens a socket subscribed to link notifications of the calling
    /// thread's namespace.
    pub fn open() -> Result<LinkWatcher, NetlinkError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        sock.add_membership(libc::RTNLGRP_LINK).map_err(NetlinkError::Socket)?;
        // Room for bursts (a namespace torn down takes all its links).
        let _ = sock.set_rx_buf_sz::<libc::c_int>(1 << 20);
        Ok(LinkWatcher { sock, buf: Vec::with_capacity(RECV_BUF_LEN) })
    }

    /// Waits for the next notification datagram and appends what it says
    /// to `out` (one datagram may hold several messages).
    pub fn wait(&mut self, out: &mut Vec<LinkEvent>) -> Result<(), NetlinkError> {
        self.buf.clear();
        match self.sock.recv(&mut self.buf, 0) {
            Ok(_) => {}
            // The kernel dropped notifications for want of buffer room.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                out.push(LinkEvent::Lost);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(NetlinkError::Recv(e)),
        }
        parse_events(&self.buf, out);
        Ok(())
    }
}

/// The link events in one notification datagram; a message that cannot be
/// read becomes [`LinkEvent::Lost`].
fn parse_events(mut bytes: &[u8], out: &mut Vec<LinkEvent>) {
    while !bytes.is_empty() {
        let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) else {
            out.push(LinkEvent::Lost);
            return;
        };
        let len = (msg.header.length as usize).next_multiple_of(4);
        if len == 0 {
            out.push(LinkEvent::Lost);
            return;
        }
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                let (index, name) = index_and_name(l);
                out.push(LinkEvent::New { index, name });
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                let (index, name) = index_and_name(l);
                out.push(LinkEvent::Gone { index, name });
            }
            NetlinkPayload::Overrun(_) => out.push(LinkEvent::Lost),
            _ => {}
        }
        bytes = bytes.get(len..).unwrap_or_default();
    }
}

fn index_and_name(msg: LinkMessage) -> (u32, String) {
    let name = msg.attributes.into_iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n),
        _ => None,
    });
    (msg.header.index, name.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(msgs: Vec<RouteNetlinkMessage>) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            let mut msg = NetlinkMessage::from(m);
            msg.finalize();
            let mut bytes = vec![0u8; msg.buffer_len()];
            msg.serialize(&mut bytes);
            out.extend_from_slice(&bytes);
        }
        out
    }

    fn link(index: u32, name: &str) -> LinkMessage {
        let mut l = LinkMessage::default();
        l.header.index = index;
        l.attributes.push(LinkAttribute::IfName(name.into()));
        l
    }

    #[test]
    fn every_message_of_a_datagram_is_read() {
        let bytes = datagram(vec![
            RouteNetlinkMessage::NewLink(link(7, "up0")),
            RouteNetlinkMessage::DelLink(link(8, "up1")),
            RouteNetlinkMessage::NewLink(link(9, "lan0")),
        ]);
        let mut out = Vec::new();
        parse_events(&bytes, &mut out);
        assert_eq!(
            out,
            [
                LinkEvent::New { index: 7, name: "up0".into() },
                LinkEvent::Gone { index: 8, name: "up1".into() },
                LinkEvent::New { index: 9, name: "lan0".into() },
            ]
        );
    }

    #[test]
    fn a_message_that_cannot_be_read_says_events_were_lost() {
        let mut bytes = datagram(vec![RouteNetlinkMessage::NewLink(link(7, "up0"))]);
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut out = Vec::new();
        parse_events(&bytes, &mut out);
        assert_eq!(out, [LinkEvent::New { index: 7, name: "up0".into() }, LinkEvent::Lost]);
    }

    #[test]
    fn the_socket_subscribes_without_privileges() {
        // Joining RTNLGRP_LINK needs no capability.
        LinkWatcher::open().expect("a link watcher");
    }
}
