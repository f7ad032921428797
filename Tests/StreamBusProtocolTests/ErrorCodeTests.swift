import Testing

@testable import StreamBusProtocol

@Suite struct ErrorCodeTests {
  @Test func numbersFollowKafka() {
    let expected: [(ErrorCode, Int16, String)] = [
      (.none, 0, "NONE"),
      (.unknownServerError, -1, "UNKNOWN_SERVER_ERROR"),
      (.offsetOutOfRange, 1, "OFFSET_OUT_OF_RANGE"),
      (.corruptMessage, 2, "CORRUPT_MESSAGE"),
      (.unknownTopicOrPartition, 3, "UNKNOWN_TOPIC_OR_PARTITION"),
      (.leaderNotAvailable, 5, "LEADER_NOT_AVAILABLE"),
      (.notLeaderOrFollower, 6, "NOT_LEADER_OR_FOLLOWER"),
      (.requestTimedOut, 7, "REQUEST_TIMED_OUT"),
      (.messageTooLarge, 10, "MESSAGE_TOO_LARGE"),
      (.networkException, 13, "NETWORK_EXCEPTION"),
      (.invalidTopic, 17, "INVALID_TOPIC_EXCEPTION"),
      (.recordListTooLarge, 18, "RECORD_LIST_TOO_LARGE"),
      (.notEnoughReplicas, 19, "NOT_ENOUGH_REPLICAS"),
      (.notEnoughReplicasAfterAppend, 20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND"),
      (.invalidRequiredAcks, 21, "INVALID_REQUIRED_ACKS"),
      (.unsupportedVersion, 35, "UNSUPPORTED_VERSION"),
      (.topicAlreadyExists, 36, "TOPIC_ALREADY_EXISTS"),
      (.invalidPartitions, 37, "INVALID_PARTITIONS"),
      (.invalidReplicationFactor, 38, "INVALID_REPLICATION_FACTOR"),
      (.invalidConfig, 40, "INVALID_CONFIG"),
      (.notController, 41, "NOT_CONTROLLER"),
      (.invalidRequest, 42, "INVALID_REQUEST"),
      (.outOfOrderSequenceNumber, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER"),
      (.duplicateSequenceNumber, 46, "DUPLICATE_SEQUENCE_NUMBER"),
      (.storageError, 56, "STORAGE_ERROR"),
      (.fencedLeaderEpoch, 74, "FENCED_LEADER_EPOCH"),
      (.unknownLeaderEpoch, 75, "UNKNOWN_LEADER_EPOCH"),
    ]
    for (code, number, name) in expected {
      #expect(code.rawValue == number)
      #expect(code.name == name)
      #expect(code.isKnown)
    }
  }

  @Test func retriability() {
    for code: ErrorCode in [
      .notLeaderOrFollower, .leaderNotAvailable, .requestTimedOut, .notEnoughReplicas,
      .fencedLeaderEpoch, .unknownLeaderEpoch, .notController, .storageError,
    ] {
      #expect(code.isRetriable, "\(code)")
    }
    for code: ErrorCode in [
      .none, .invalidRequest, .unsupportedVersion, .topicAlreadyExists, .messageTooLarge,
      ErrorCode(rawValue: 12_345),
    ] {
      #expect(!code.isRetriable, "\(code)")
    }
  }

  @Test func namesAreUniqueAndDescribed() {
    let names = ErrorCode.known.map(\.name)
    #expect(Set(names).count == names.count)
    #expect(ErrorCode.known.first == .unknownServerError)
    for code in ErrorCode.known {
      #expect(!code.meaning.isEmpty)
      #expect(code.description.contains(code.name))
    }
  }
}
