//! Which room each client joins and which clients send.
//!
//! Client `i` joins room `i % rooms`, so room sizes differ by at most one; within a room
//! members are numbered in join order (`i / rooms`) and the first `senders_per_room` of
//! them send. Being a pure function of the client id, a received message's sender id maps
//! back to its room and sender slot without any per-message bookkeeping.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub clients: usize,
    pub rooms: usize,
    pub senders_per_room: usize,
}

impl Layout {
    /// `senders_per_room: None` means every member sends.
    pub fn new(
        clients: usize,
        rooms: usize,
        senders_per_room: Option<usize>,
    ) -> Result<Layout, String> {
        if clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if rooms == 0 {
            return Err("--rooms must be at least 1".into());
        }
        if rooms > clients {
            return Err(format!(
                "--rooms ({rooms}) is more than --clients ({clients}): some rooms would be empty"
            ));
        }
        if clients > u32::MAX as usize / 2 {
            return Err("--clients is absurdly large".into());
        }
        let largest = clients.div_ceil(rooms);
        let senders_per_room = senders_per_room.unwrap_or(largest).min(largest);
        Ok(Layout {
            clients,
            rooms,
            senders_per_room,
        })
    }

    pub fn room_of(&self, client: usize) -> usize {
        client % self.rooms
    }

    pub fn room_size(&self, room: usize) -> usize {
        self.clients / self.rooms + usize::from(room < self.clients % self.rooms)
    }

    pub fn senders_in_room(&self, room: usize) -> usize {
        self.senders_per_room.min(self.room_size(room))
    }

    /// The client's index among its room's senders, if it sends.
    pub fn sender_slot(&self, client: usize) -> Option<usize> {
        let member = client / self.rooms;
        (client < self.clients && member < self.senders_per_room).then_some(member)
    }

    /// Which of `nodes` servers client `client` connects to: member `m` of a room (its
    /// `m`-th client, `client / rooms`) goes to node `m % nodes`, so every room of at
    /// least `nodes` members has members -- and, with enough senders per room, senders --
    /// on every node, and the nodes get equal shares of clients (within one per room).
    pub fn node_of(&self, client: usize, nodes: usize) -> usize {
        (client / self.rooms) % nodes.max(1)
    }

    pub fn total_senders(&self) -> usize {
        (0..self.rooms).map(|r| self.senders_in_room(r)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_balanced_and_senders_counted() {
        let l = Layout::new(10, 3, Some(2)).unwrap();
        assert_eq!(
            (0..3).map(|r| l.room_size(r)).collect::<Vec<_>>(),
            vec![4, 3, 3]
        );
        assert_eq!(l.total_senders(), 6);
        assert_eq!(l.sender_slot(0), Some(0));
        assert_eq!(l.sender_slot(3), Some(1));
        assert_eq!(l.sender_slot(6), None);
        let all = Layout::new(10, 3, None).unwrap();
        assert_eq!(all.total_senders(), 10);
        assert!(Layout::new(2, 3, None).is_err());
    }

    #[test]
    fn members_of_every_room_are_spread_over_the_nodes() {
        // 3 rooms of 4 members over 2 nodes: members 0 and 2 of each room on node 0.
        let l = Layout::new(12, 3, Some(2)).unwrap();
        let nodes: Vec<usize> = (0..12).map(|c| l.node_of(c, 2)).collect();
        assert_eq!(nodes, vec![0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1]);
        for room in 0..3 {
            let members: Vec<usize> = (0..12).filter(|&c| l.room_of(c) == room).collect();
            // Member i of the room is on node i % 2; the two senders are on both nodes.
            for (i, &c) in members.iter().enumerate() {
                assert_eq!(l.node_of(c, 2), i % 2);
            }
            let sender_nodes: Vec<usize> = members
                .iter()
                .filter(|&&c| l.sender_slot(c).is_some())
                .map(|&c| l.node_of(c, 2))
                .collect();
            assert_eq!(sender_nodes, vec![0, 1]);
        }
        assert!((0..12).all(|c| l.node_of(c, 1) == 0));
    }
}
