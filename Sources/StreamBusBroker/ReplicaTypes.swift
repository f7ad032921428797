import StreamBusProtocol
import StreamBusStorage

/// A partition's leadership as the metadata image states it.
public struct PartitionLeadership: Sendable, Equatable {
  public var topicID: Int64
  /// -1: the partition has no leader.
  public var leader: Int32
  public var leaderEpoch: Int32
  public var partitionEpoch: Int32
  public var replicas: [Int32]
  public var isr: [Int32]
  /// The effective `min.insync.replicas` (the topic's, else 2 when RF >= 3, else 1).
  public var minInsyncReplicas: Int

  public init(
    topicID: Int64, leader: Int32, leaderEpoch: Int32, partitionEpoch: Int32, replicas: [Int32],
    isr: [Int32], minInsyncReplicas: Int
  ) {
    self.topicID = topicID
    self.leader = leader
    self.leaderEpoch = leaderEpoch
    self.partitionEpoch = partitionEpoch
    self.replicas = replicas
    self.isr = isr
    self.minInsyncReplicas = minInsyncReplicas
  }
}

/// What a replica does for its partition.
public enum ReplicaRole: Sendable, Equatable {
  /// A standalone broker: always the leader, epoch 0, the ISR is this broker alone.
  case standaloneLeader
  /// The cluster leader of `epoch`: takes produces and serves followers.
  case leader(epoch: Int32)
  /// Copies the leader's log; `leader` is -1 while the partition has no leader.
  case follower(leader: Int32, epoch: Int32)
}

/// One partition of a follower's Fetch, as the leader receives it.
public struct FollowerFetch: Sendable, Equatable {
  public var replicaID: Int32
  /// The follower's log end offset, which it only sends once everything below is fsynced.
  public var fetchOffset: Int64
  /// The epoch of the last batch in the follower's log (-1: none).
  public var lastFetchedEpoch: Int32
  /// The leader epoch the follower believes current (-1: do not check).
  public var currentLeaderEpoch: Int32
  public var logStartOffset: Int64
  public var maxBytes: Int

  public init(
    replicaID: Int32, fetchOffset: Int64, lastFetchedEpoch: Int32, currentLeaderEpoch: Int32,
    logStartOffset: Int64, maxBytes: Int
  ) {
    self.replicaID = replicaID
    self.fetchOffset = fetchOffset
    self.lastFetchedEpoch = lastFetchedEpoch
    self.currentLeaderEpoch = currentLeaderEpoch
    self.logStartOffset = logStartOffset
    self.maxBytes = maxBytes
  }
}

/// The leader's answer to one partition of a follower's Fetch.
public struct FollowerReadOutcome: Sendable {
  public var errorCode: ErrorCode
  public var errorMessage: String?
  public var highWatermark: Int64
  public var logStartOffset: Int64
  public var logEndOffset: Int64
  /// Set when the follower's log diverged: truncate with `truncateForDivergence` and fetch
  /// again. `records` is empty then.
  public var divergingEpoch: (epoch: Int32, endOffset: Int64)?
  /// Whole batches from the fetch offset, up to the leader's log end offset.
  public var records: [UInt8]
  /// The batches as a range of a segment file instead of `records`.
  public var recordsFile: LogFileSlice?
  /// The leader's current epoch as this replica knows it (-1: unknown).
  public var leaderEpoch: Int32
  /// The leader as this replica knows it (itself when it leads; -1: unknown).
  public var leaderID: Int32

  /// Record bytes returned, in either form.
  public var recordByteCount: Int { recordsFile?.byteCount ?? records.count }

  static func failure(
    _ code: ErrorCode, _ message: String?, leaderEpoch: Int32 = -1, leaderID: Int32 = -1
  ) -> FollowerReadOutcome {
    FollowerReadOutcome(
      errorCode: code, errorMessage: message, highWatermark: -1, logStartOffset: -1,
      logEndOffset: -1, divergingEpoch: nil, records: [], recordsFile: nil,
      leaderEpoch: leaderEpoch, leaderID: leaderID)
  }
}

/// Where a follower fetches from next.
public struct FollowerFetchState: Sendable, Equatable {
  public var leader: Int32
  public var leaderEpoch: Int32
  /// The follower's log end offset.
  public var fetchOffset: Int64
  /// The epoch of the newest batch in the follower's log (-1: empty log).
  public var lastFetchedEpoch: Int32
  public var logStartOffset: Int64

  public init(
    leader: Int32, leaderEpoch: Int32, fetchOffset: Int64, lastFetchedEpoch: Int32,
    logStartOffset: Int64
  ) {
    self.leader = leader
    self.leaderEpoch = leaderEpoch
    self.fetchOffset = fetchOffset
    self.lastFetchedEpoch = lastFetchedEpoch
    self.logStartOffset = logStartOffset
  }
}

/// An ISR change the leader wants the controller to make (AlterPartition).
public struct IsrChangeProposal: Sendable, Equatable {
  public var topicID: Int64
  public var partition: Int32
  public var leaderEpoch: Int32
  /// The partition epoch the proposal is based on; the controller refuses a stale one.
  public var partitionEpoch: Int32
  public var newIsr: [Int32]

  public init(
    topicID: Int64, partition: Int32, leaderEpoch: Int32, partitionEpoch: Int32, newIsr: [Int32]
  ) {
    self.topicID = topicID
    self.partition = partition
    self.leaderEpoch = leaderEpoch
    self.partitionEpoch = partitionEpoch
    self.newIsr = newIsr
  }
}

/// A replica's replication status (sbctl topic describe).
public struct ReplicationState: Sendable, Equatable {
  /// The leader's view of one follower: its durable log end offset as of its last fetch
  /// (-1 before any) and when it was last caught up (-1: never); as ReplicaStatus reports it.
  public typealias FollowerState = ReplicaStatusResponse.Follower

  public var role: ReplicaRole
  public var leaderEpoch: Int32
  public var partitionEpoch: Int32
  public var isr: [Int32]
  public var logStartOffset: Int64
  public var highWatermark: Int64
  public var logEndOffset: Int64
  public var durableEndOffset: Int64
  /// Filled on the leader only, in replica order.
  public var followers: [FollowerState]
  /// On the leader: leader append → follower durable, over this leadership's samples.
  public var replicationLag: ReplicationLagSummary = .none
}
