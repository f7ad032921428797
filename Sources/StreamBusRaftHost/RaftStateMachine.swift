import StreamBusRaft

/// One committed application entry, handed to the state machine in log order.
public struct CommittedEntry: Sendable, Hashable {
  public var index: LogIndex
  public var term: Term
  public var data: [UInt8]

  public init(index: LogIndex, term: Term, data: [UInt8]) {
    self.index = index
    self.term = term
    self.data = data
  }
}

/// The application replicated by a `RaftHost` (the metaserver's metadata image).
///
/// Every method is called on the host's driver thread, one call at a time, and must not
/// block on other work of the host (no `await` is possible there anyway). Indices of
/// applied entries increase but skip the entries the host consumes itself (a new leader's
/// empty entry and membership changes) and index 1, the bootstrap snapshot of a new cluster.
///
/// A state machine handed to `RaftHost.start` is in its initial state (before any entry).
/// A founder of a new cluster stores `snapshot()` of that state in its bootstrap snapshot,
/// so it should encode deterministically (no timestamps, no random or hash order). The
/// host never `restore`s the bootstrap snapshot: the state machine is already in that state.
///
/// A thrown error stops the host: replicas must apply the same entries to the same result,
/// so a replica that cannot is not allowed to carry on.
public protocol RaftStateMachine: Sendable {
  /// Applies committed entries, after they are durable locally, in log order.
  func apply(entries: [CommittedEntry]) throws
  /// The state as of the last applied entry, as bytes `restore` accepts.
  func snapshot() throws -> [UInt8]
  /// Replaces the whole state by a snapshot taken at `index` (on start-up when the database
  /// holds one, or when the leader sent one). A new state machine starts empty.
  func restore(from data: [UInt8], index: LogIndex) throws
}
