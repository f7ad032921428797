/// Error code on the wire (i16). Numbers follow Kafka where Kafka has the same condition,
/// so operators can look them up; codes this build does not know are preserved as-is.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public let rawValue: Int16

  public init(rawValue: Int16) {
    self.rawValue = rawValue
  }

  public static let none = ErrorCode(rawValue: 0)
  public static let unknownServerError = ErrorCode(rawValue: -1)
  public static let offsetOutOfRange = ErrorCode(rawValue: 1)
  public static let corruptMessage = ErrorCode(rawValue: 2)
  public static let unknownTopicOrPartition = ErrorCode(rawValue: 3)
  public static let leaderNotAvailable = ErrorCode(rawValue: 5)
  public static let notLeaderOrFollower = ErrorCode(rawValue: 6)
  public static let requestTimedOut = ErrorCode(rawValue: 7)
  public static let brokerNotAvailable = ErrorCode(rawValue: 8)
  public static let replicaNotAvailable = ErrorCode(rawValue: 9)
  public static let messageTooLarge = ErrorCode(rawValue: 10)
  public static let networkException = ErrorCode(rawValue: 13)
  public static let invalidTopic = ErrorCode(rawValue: 17)
  public static let recordListTooLarge = ErrorCode(rawValue: 18)
  public static let notEnoughReplicas = ErrorCode(rawValue: 19)
  public static let notEnoughReplicasAfterAppend = ErrorCode(rawValue: 20)
  public static let invalidRequiredAcks = ErrorCode(rawValue: 21)
  public static let invalidTimestamp = ErrorCode(rawValue: 32)
  public static let unsupportedVersion = ErrorCode(rawValue: 35)
  public static let topicAlreadyExists = ErrorCode(rawValue: 36)
  public static let invalidPartitions = ErrorCode(rawValue: 37)
  public static let invalidReplicationFactor = ErrorCode(rawValue: 38)
  public static let invalidReplicaAssignment = ErrorCode(rawValue: 39)
  public static let invalidConfig = ErrorCode(rawValue: 40)
  public static let notController = ErrorCode(rawValue: 41)
  public static let invalidRequest = ErrorCode(rawValue: 42)
  public static let policyViolation = ErrorCode(rawValue: 44)
  public static let outOfOrderSequenceNumber = ErrorCode(rawValue: 45)
  public static let duplicateSequenceNumber = ErrorCode(rawValue: 46)
  public static let invalidProducerEpoch = ErrorCode(rawValue: 47)
  public static let storageError = ErrorCode(rawValue: 56)
  public static let unknownProducerId = ErrorCode(rawValue: 59)
  public static let fencedLeaderEpoch = ErrorCode(rawValue: 74)
  public static let unknownLeaderEpoch = ErrorCode(rawValue: 75)
  public static let staleBrokerEpoch = ErrorCode(rawValue: 77)
  public static let offsetNotAvailable = ErrorCode(rawValue: 78)
  public static let preferredLeaderNotAvailable = ErrorCode(rawValue: 80)
  public static let electionNotNeeded = ErrorCode(rawValue: 84)
  public static let invalidUpdateVersion = ErrorCode(rawValue: 95)
  public static let duplicateBrokerRegistration = ErrorCode(rawValue: 101)
  public static let brokerIdNotRegistered = ErrorCode(rawValue: 102)
  public static let inconsistentClusterId = ErrorCode(rawValue: 104)
  public static let ineligibleReplica = ErrorCode(rawValue: 107)

  // StreamBus's own codes, above Kafka's range.
  /// The metaserver is not the Raft leader; the body names the leader when known.
  public static let notLeader = ErrorCode(rawValue: 1000)
  /// A metadata quorum membership change is still in progress.
  public static let reconfigurationInProgress = ErrorCode(rawValue: 1001)
  /// The metadata quorum could not commit the write (no majority reachable).
  public static let quorumUnavailable = ErrorCode(rawValue: 1002)
  /// The broker is fenced by the controller (its session timed out) and must re-register.
  public static let brokerFenced = ErrorCode(rawValue: 1003)

  struct Info: Sendable {
    let name: String
    let isRetriable: Bool
    let meaning: String
  }

  /// The table behind `name`, `isRetriable` and `meaning`; also rendered in docs/protocol.md.
  static let table: [ErrorCode: Info] = [
    .none: Info(name: "NONE", isRetriable: false, meaning: "Success."),
    .unknownServerError: Info(
      name: "UNKNOWN_SERVER_ERROR", isRetriable: false,
      meaning: "The server hit an unexpected error; see its log."),
    .offsetOutOfRange: Info(
      name: "OFFSET_OUT_OF_RANGE", isRetriable: false,
      meaning: "The requested offset is outside the partition's log."),
    .corruptMessage: Info(
      name: "CORRUPT_MESSAGE", isRetriable: true,
      meaning: "A record batch failed its CRC or structural checks."),
    .unknownTopicOrPartition: Info(
      name: "UNKNOWN_TOPIC_OR_PARTITION", isRetriable: true,
      meaning: "This server does not host the topic or partition."),
    .leaderNotAvailable: Info(
      name: "LEADER_NOT_AVAILABLE", isRetriable: true,
      meaning: "The partition has no leader right now (election in progress)."),
    .notLeaderOrFollower: Info(
      name: "NOT_LEADER_OR_FOLLOWER", isRetriable: true,
      meaning: "This broker is not the leader (or a replica) of the partition; refresh metadata."),
    .requestTimedOut: Info(
      name: "REQUEST_TIMED_OUT", isRetriable: true,
      meaning: "The request did not complete within its timeout."),
    .brokerNotAvailable: Info(
      name: "BROKER_NOT_AVAILABLE", isRetriable: false, meaning: "The broker is not available."),
    .replicaNotAvailable: Info(
      name: "REPLICA_NOT_AVAILABLE", isRetriable: true,
      meaning: "The replica is not available on this broker."),
    .messageTooLarge: Info(
      name: "MESSAGE_TOO_LARGE", isRetriable: false,
      meaning: "A request or record batch exceeds the configured size limit."),
    .networkException: Info(
      name: "NETWORK_EXCEPTION", isRetriable: true,
      meaning: "The connection dropped before the response arrived."),
    .invalidTopic: Info(
      name: "INVALID_TOPIC_EXCEPTION", isRetriable: false,
      meaning: "The topic name is not valid."),
    .recordListTooLarge: Info(
      name: "RECORD_LIST_TOO_LARGE", isRetriable: false,
      meaning: "The records for one partition exceed the segment size."),
    .notEnoughReplicas: Info(
      name: "NOT_ENOUGH_REPLICAS", isRetriable: true,
      meaning: "The in-sync replica set is smaller than min.insync.replicas."),
    .notEnoughReplicasAfterAppend: Info(
      name: "NOT_ENOUGH_REPLICAS_AFTER_APPEND", isRetriable: true,
      meaning: "Appended on the leader, but the ISR shrank below the minimum before commit."),
    .invalidRequiredAcks: Info(
      name: "INVALID_REQUIRED_ACKS", isRetriable: false,
      meaning: "acks must be 0, 1 or -1."),
    .invalidTimestamp: Info(
      name: "INVALID_TIMESTAMP", isRetriable: false,
      meaning: "A record timestamp is outside the accepted range."),
    .unsupportedVersion: Info(
      name: "UNSUPPORTED_VERSION", isRetriable: false,
      meaning: "The API or API version is not supported by this server."),
    .topicAlreadyExists: Info(
      name: "TOPIC_ALREADY_EXISTS", isRetriable: false, meaning: "The topic already exists."),
    .invalidPartitions: Info(
      name: "INVALID_PARTITIONS", isRetriable: false, meaning: "The partition count is invalid."),
    .invalidReplicationFactor: Info(
      name: "INVALID_REPLICATION_FACTOR", isRetriable: false,
      meaning: "The replication factor is invalid or exceeds the live broker count."),
    .invalidReplicaAssignment: Info(
      name: "INVALID_REPLICA_ASSIGNMENT", isRetriable: false,
      meaning: "The replica assignment is invalid."),
    .invalidConfig: Info(
      name: "INVALID_CONFIG", isRetriable: false, meaning: "A configuration value is invalid."),
    .notController: Info(
      name: "NOT_CONTROLLER", isRetriable: true,
      meaning: "This node is not the active metaserver controller; retry on the leader."),
    .invalidRequest: Info(
      name: "INVALID_REQUEST", isRetriable: false,
      meaning: "The request is malformed (bad lengths, counts, UTF-8 or trailing bytes)."),
    .policyViolation: Info(
      name: "POLICY_VIOLATION", isRetriable: false,
      meaning: "The request violates a configured policy."),
    .outOfOrderSequenceNumber: Info(
      name: "OUT_OF_ORDER_SEQUENCE_NUMBER", isRetriable: false,
      meaning: "The producer sequence number skips ahead of the expected one."),
    .duplicateSequenceNumber: Info(
      name: "DUPLICATE_SEQUENCE_NUMBER", isRetriable: false,
      meaning: "The batch was already appended (idempotent duplicate)."),
    .invalidProducerEpoch: Info(
      name: "INVALID_PRODUCER_EPOCH", isRetriable: false,
      meaning: "The producer epoch is older than the current one."),
    .storageError: Info(
      name: "STORAGE_ERROR", isRetriable: true,
      meaning: "A disk error on the broker; the replica went offline."),
    .unknownProducerId: Info(
      name: "UNKNOWN_PRODUCER_ID", isRetriable: false,
      meaning: "The broker has no state for this producer id."),
    .fencedLeaderEpoch: Info(
      name: "FENCED_LEADER_EPOCH", isRetriable: true,
      meaning: "The leader epoch in the request is older than the broker's."),
    .unknownLeaderEpoch: Info(
      name: "UNKNOWN_LEADER_EPOCH", isRetriable: true,
      meaning: "The leader epoch in the request is newer than the broker's."),
    .staleBrokerEpoch: Info(
      name: "STALE_BROKER_EPOCH", isRetriable: false,
      meaning: "The broker epoch is older than the registered one."),
    .offsetNotAvailable: Info(
      name: "OFFSET_NOT_AVAILABLE", isRetriable: true,
      meaning: "The leader cannot serve the offset yet (high watermark behind)."),
    .preferredLeaderNotAvailable: Info(
      name: "PREFERRED_LEADER_NOT_AVAILABLE", isRetriable: true,
      meaning: "The preferred leader is not in the ISR or not an active broker."),
    .electionNotNeeded: Info(
      name: "ELECTION_NOT_NEEDED", isRetriable: false,
      meaning: "The partition is already led by its preferred leader."),
    .invalidUpdateVersion: Info(
      name: "INVALID_UPDATE_VERSION", isRetriable: false,
      meaning: "The partition epoch in an AlterPartition request is stale."),
    .duplicateBrokerRegistration: Info(
      name: "DUPLICATE_BROKER_REGISTRATION", isRetriable: false,
      meaning: "Another live broker is registered with this id."),
    .brokerIdNotRegistered: Info(
      name: "BROKER_ID_NOT_REGISTERED", isRetriable: false,
      meaning: "The broker id is not registered with the metaserver."),
    .inconsistentClusterId: Info(
      name: "INCONSISTENT_CLUSTER_ID", isRetriable: false,
      meaning: "The cluster id does not match this cluster."),
    .ineligibleReplica: Info(
      name: "INELIGIBLE_REPLICA", isRetriable: false,
      meaning: "The proposed ISR contains a replica that may not join it."),
    .notLeader: Info(
      name: "NOT_LEADER", isRetriable: true,
      meaning: "This metaserver is not the Raft leader; retry on the leader named in the reply."),
    .reconfigurationInProgress: Info(
      name: "RECONFIGURATION_IN_PROGRESS", isRetriable: true,
      meaning: "Another metadata quorum membership change has not finished yet."),
    .quorumUnavailable: Info(
      name: "QUORUM_UNAVAILABLE", isRetriable: true,
      meaning: "The metadata quorum could not commit the write: no majority is reachable."),
    .brokerFenced: Info(
      name: "BROKER_FENCED", isRetriable: true,
      meaning: "The broker's session expired and the controller fenced it; it must re-register."),
  ]

  /// Every code this build names, in numeric order.
  public static var known: [ErrorCode] { table.keys.sorted { $0.rawValue < $1.rawValue } }

  public var isKnown: Bool { ErrorCode.table[self] != nil }

  /// Upper-snake name, or `UNKNOWN_ERROR_CODE(n)` for a code this build does not know.
  public var name: String {
    ErrorCode.table[self]?.name ?? "UNKNOWN_ERROR_CODE(\(rawValue))"
  }

  /// Whether the same request may succeed if retried (possibly after a metadata refresh).
  /// Unknown codes are not retriable: retrying blindly could loop forever.
  public var isRetriable: Bool { ErrorCode.table[self]?.isRetriable ?? false }

  public var meaning: String {
    ErrorCode.table[self]?.meaning ?? "An error code this version does not know."
  }

  public var description: String { "\(name) (\(rawValue)): \(meaning)" }
}
