import Foundation
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

@Suite struct ProtocolDocsTests {
  /// docs/protocol.md's error table must list exactly the codes this build names.
  @Test func errorTableMatchesTheCode() throws {
    let testsDirectory = URLPath(#filePath).parent
    let docsPath = testsDirectory.parent.parent.appending("docs/protocol.md")
    let text = try String(contentsOfFile: docsPath.value, encoding: .utf8)
    var rows: [Int16: (name: String, retriable: Bool)] = [:]
    for line in text.split(separator: "\n") {
      let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
      guard cells.count == 4, let code = Int16(cells[0]), cells[1].hasPrefix("`") else { continue }
      rows[code] = (String(cells[1].dropFirst().dropLast()), cells[2] == "yes")
    }
    #expect(rows.count == ErrorCode.known.count)
    for code in ErrorCode.known {
      let row = try #require(rows[code.rawValue], "\(code.name) missing from docs")
      #expect(row.name == code.name)
      #expect(row.retriable == code.isRetriable, "\(code.name)")
    }
  }
}

/// Minimal path helper so the test needs no Foundation URL handling.
private struct URLPath {
  let value: String

  init(_ value: String) {
    self.value = value
  }

  var parent: URLPath {
    guard let slash = value.lastIndex(of: "/") else { return URLPath(".") }
    return URLPath(String(value[..<slash]))
  }

  func appending(_ component: String) -> URLPath {
    URLPath(value + "/" + component)
  }
}
