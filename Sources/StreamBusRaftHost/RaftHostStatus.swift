import StreamBusRaft

/// One member of the group as this node sees it.
public struct RaftMemberStatus: Sendable, Hashable {
  public var id: NodeID
  public var addresses: PeerAddresses?
  /// Leader only: highest index known to be on the member's disk.
  public var matchIndex: LogIndex?
  /// Leader only: entries the member is behind the leader's last index.
  public var lag: UInt64?
  /// Milliseconds since this node last received a message from the member (nil: never;
  /// 0 for this node itself).
  public var lastContactMs: Int64?

  public init(
    id: NodeID, addresses: PeerAddresses?, matchIndex: LogIndex? = nil, lag: UInt64? = nil,
    lastContactMs: Int64? = nil
  ) {
    self.id = id
    self.addresses = addresses
    self.matchIndex = matchIndex
    self.lag = lag
    self.lastContactMs = lastContactMs
  }
}

/// A consistent picture of one host, refreshed after every Ready and every tick.
public struct RaftHostStatus: Sendable, Hashable {
  public var nodeID: NodeID
  public var role: RaftRole
  public var term: Term
  public var leaderID: NodeID?
  public var leaderAddresses: PeerAddresses?
  public var commitIndex: LogIndex
  public var appliedIndex: LogIndex
  public var lastIndex: LogIndex
  /// Index of the latest snapshot in the database (0: none).
  public var snapshotIndex: LogIndex
  /// Leader only: it applied an entry of its own term, so its state machine holds every
  /// committed entry (the point where a controller may start acting).
  public var isLeaderReady: Bool
  public var voters: [RaftMemberStatus]
  public var learners: [RaftMemberStatus]
  /// Set once a storage, state-machine or safety failure stopped the node.
  public var stopReason: String?

  public init(nodeID: NodeID) {
    self.nodeID = nodeID
    role = .follower
    term = 0
    commitIndex = 0
    appliedIndex = 0
    lastIndex = 0
    snapshotIndex = 0
    isLeaderReady = false
    voters = []
    learners = []
  }

  public var isLeader: Bool { role == .leader }

  /// The parts whose change `RaftHost.statusChanges()` reports (indices and contact times
  /// change all the time and are left out).
  var leadershipView: LeadershipView {
    LeadershipView(
      role: role, term: term, leaderID: leaderID, leaderAddresses: leaderAddresses,
      isLeaderReady: isLeaderReady, voters: voters.map(\.id), learners: learners.map(\.id),
      stopReason: stopReason)
  }

  struct LeadershipView: Hashable {
    var role: RaftRole
    var term: Term
    var leaderID: NodeID?
    var leaderAddresses: PeerAddresses?
    var isLeaderReady: Bool
    var voters: [NodeID]
    var learners: [NodeID]
    var stopReason: String?
  }
}
