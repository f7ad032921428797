import StreamBusRaft
import StreamBusRaftSQLite
import StreamBusTransport

/// Where a member of the Raft group can be reached: its peer (Raft) listener, and the
/// metaserver API listener that NOT_LEADER answers point clients to.
public struct PeerAddresses: Sendable, Hashable, CustomStringConvertible {
  public var raftAddress: HostPort
  public var apiAddress: HostPort?

  public init(raftAddress: HostPort, apiAddress: HostPort? = nil) {
    self.raftAddress = raftAddress
    self.apiAddress = apiAddress
  }

  public var description: String {
    "raft \(raftAddress)" + (apiAddress.map { " api \($0)" } ?? "")
  }
}

/// Settings of one `RaftHost`. Times are in milliseconds unless the name says ticks.
public struct RaftHostConfiguration: Sendable {
  public var nodeID: NodeID
  /// Every peer frame carries it; frames of another cluster are dropped.
  public var clusterID: String
  /// The SQLite database holding this node's log, hard state and snapshot.
  public var databasePath: String
  public var storageOptions = SQLiteRaftStorage.Options()
  /// Listener for peer traffic; port 0 lets the OS pick (see `RaftHost.raftAddress`).
  public var raftListen: HostPort
  /// Raft address announced to peers; nil means this node's entry in `initialCluster`, or
  /// else the bound listen address (which may be a wildcard such as 0.0.0.0).
  public var advertisedRaftAddress: HostPort?
  /// This node's metaserver API address, announced to peers so their NOT_LEADER answers
  /// can name it when this node leads.
  public var apiAddress: HostPort?
  /// Members of a new cluster. Only used when the database is created: it then starts from
  /// the bootstrap snapshot (index 1, term 1) holding these voters and addresses; later
  /// starts take membership from the database. Every founder must be given the same ids and
  /// addresses: their bootstrap snapshots must be identical.
  public var initialCluster: [NodeID: PeerAddresses] = [:]
  /// Bootstrap nothing and wait to be added as a learner by the leader.
  public var join = false

  /// Length of one Raft tick.
  public var tickIntervalMs: Int64 = 25
  /// A follower campaigns after a random `electionTimeoutTicks ..< 2 × electionTimeoutTicks`
  /// without a leader: 300–600 ms with the defaults, so a failover after a leader dies takes
  /// about half a second.
  public var electionTimeoutTicks = 12
  public var heartbeatTicks = 2
  public var preVote = true
  public var checkQuorum = true
  /// Seed of the election jitter; nil draws a random one.
  public var randomSeed: UInt64?
  /// Entry payload bytes per append message.
  public var appendBytesMax: UInt64 = 1 << 20
  /// Snapshot bytes per InstallSnapshot message.
  public var snapshotChunkBytesMax = 1 << 20
  /// Largest payload `propose` accepts.
  public var proposalBytesMax = 8 << 20

  /// Take a snapshot (and compact the log) after this many applied entries.
  public var snapshotThresholdEntries: UInt64 = 10_000
  /// Entries kept in the log behind a snapshot, so a follower that is slightly behind
  /// catches up from the log instead of receiving the whole snapshot.
  public var snapshotTrailingEntries: UInt64 = 1_000

  /// How long `propose` and the membership calls wait for their entry to be applied.
  public var proposalTimeoutMs: Int64 = 5_000
  /// How long `linearizableRead` waits.
  public var readTimeoutMs: Int64 = 5_000
  /// How long `transferLeadership` waits for the new leader; nil means four election
  /// timeouts (the core abandons a transfer after one).
  public var transferTimeoutMs: Int64?
  /// `promote` refuses a learner more than this many entries behind the leader.
  public var promotionLagEntriesMax: UInt64 = 1_000

  /// Raft messages waiting for one peer's connection; beyond it new messages are dropped
  /// (Raft retransmits what matters).
  public var peerQueueMessagesMax = 4_096
  public var peerQueueBytesMax = 32 << 20
  /// Messages are coalesced into frames up to this size (one message may exceed it).
  public var peerFrameBytesMax = 4 << 20
  public var peerConnectTimeoutMs: Int64 = 1_000
  public var reconnectBackoffMinMs: Int64 = 20
  public var reconnectBackoffMaxMs: Int64 = 1_000

  public init(nodeID: NodeID, clusterID: String, databasePath: String, raftListen: HostPort) {
    self.nodeID = nodeID
    self.clusterID = clusterID
    self.databasePath = databasePath
    self.raftListen = raftListen
  }

  /// Transfer timeout actually used.
  public var effectiveTransferTimeoutMs: Int64 {
    transferTimeoutMs ?? 4 * Int64(electionTimeoutTicks) * tickIntervalMs
  }

  /// Throws `invalidConfiguration` naming the first bad setting.
  public func validate() throws {
    func fail(_ message: String) -> RaftHostError {
      RaftHostError(.invalidConfiguration, message)
    }
    guard nodeID != 0 else { throw fail("node id 0 is reserved") }
    guard !clusterID.isEmpty, clusterID.utf8.count <= PeerFrame.clusterIDBytesMax else {
      throw fail("cluster id must have 1...\(PeerFrame.clusterIDBytesMax) bytes")
    }
    guard !databasePath.isEmpty else { throw fail("database path is empty") }
    if initialCluster.keys.contains(0) { throw fail("initial cluster contains node id 0") }
    if !join {
      guard initialCluster[nodeID] != nil else {
        throw fail(
          "node \(nodeID) is not in the initial cluster \(initialCluster.keys.sorted()); "
            + "start it with join to be added later")
      }
    }
    // Bounds keep every derived duration far from Int64 overflow (TimeAmount is in ns).
    let durationMsMax: Int64 = 86_400_000
    guard (1...60_000).contains(tickIntervalMs) else {
      throw fail("tick interval must be 1...60000 ms")
    }
    guard heartbeatTicks > 0, electionTimeoutTicks > heartbeatTicks,
      electionTimeoutTicks <= 10_000
    else {
      throw fail("need 0 < heartbeat ticks < election timeout ticks <= 10000")
    }
    guard appendBytesMax > 0, snapshotChunkBytesMax > 0, proposalBytesMax > 0 else {
      throw fail("byte limits must be positive")
    }
    guard snapshotThresholdEntries > 0 else { throw fail("snapshot threshold must be positive") }
    for (name, value) in [
      ("proposal timeout", proposalTimeoutMs), ("read timeout", readTimeoutMs),
      ("transfer timeout", transferTimeoutMs ?? 1), ("peer connect timeout", peerConnectTimeoutMs),
      ("reconnect backoff min", reconnectBackoffMinMs),
      ("reconnect backoff max", reconnectBackoffMaxMs),
    ] where !(1...durationMsMax).contains(value) {
      throw fail("\(name) must be 1...\(durationMsMax) ms")
    }
    guard peerQueueMessagesMax > 0, peerQueueBytesMax > 0, peerFrameBytesMax > 0 else {
      throw fail("peer queue limits must be positive")
    }
    guard reconnectBackoffMaxMs >= reconnectBackoffMinMs else {
      throw fail("reconnect backoff max must not be below its min")
    }
    // A frame holds at most a peer frame's worth plus one message (an append of up to
    // appendBytesMax, exceeded by at most one entry); all of it must fit the transport's
    // 64 MiB frame limit.
    let limitBytesMax = 16 << 20
    guard snapshotChunkBytesMax <= limitBytesMax, appendBytesMax <= UInt64(limitBytesMax),
      proposalBytesMax <= limitBytesMax, peerFrameBytesMax <= limitBytesMax
    else {
      throw fail("append, snapshot chunk, proposal and peer frame limits are at most 16 MiB")
    }
  }
}
