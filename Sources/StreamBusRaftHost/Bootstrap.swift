// The initial membership of a new cluster as replicated state: every founder's database
// starts from the same snapshot at index 1, so a node that joins later and needs that
// position receives the founders' membership (and addresses) by InstallSnapshot rather
// than never hearing of it. See docs/raft-host.md, "Bootstrap and addresses".

import StreamBusRaft

/// The snapshot every founder of a cluster starts from.
enum BootstrapSnapshot {
  /// Position of the bootstrap snapshot; the log of a new cluster starts right after it.
  static let index: LogIndex = 1
  /// Its term: above 0 so it is a real log position whose term the founders agree on.
  static let term: Term = 1

  /// The bootstrap snapshot of a cluster founded with `initialCluster`: voters are its ids,
  /// data is a host envelope holding its address book and `initialState`, the state
  /// machine's snapshot of its state before any entry.
  ///
  /// Deterministic: the same cluster and state give the same bytes on every founder (the
  /// address book is encoded in id order, nothing depends on time or randomness), as Raft's
  /// log matching requires of two logs holding the same (index, term). Members configured
  /// with port 0 (let the OS pick) are left out of the book: such an address cannot be
  /// dialed, and peers learn the bound one from that member's frames.
  static func make(initialCluster: [NodeID: PeerAddresses], initialState: [UInt8]) -> Snapshot {
    let book = AddressBook(initialCluster.filter { $0.value.raftAddress.port != 0 })
    let envelope = SnapshotEnvelope(addressBook: book, stateMachineData: initialState)
    let metadata = SnapshotMetadata(
      index: index, term: term, confState: ConfState(voters: initialCluster.keys.sorted()))
    return Snapshot(metadata: metadata, data: envelope.encoded())
  }

  /// Whether a snapshot at `index` holds the state before any application entry, so the
  /// state machine (which starts in that state) need not restore it. True for index 1: in
  /// a cluster bootstrapped by snapshot that is the bootstrap snapshot, and in a database
  /// created before bootstrap snapshots existed entry 1 is the first leader's empty no-op.
  static func holdsInitialState(_ index: LogIndex) -> Bool { index <= Self.index }
}
