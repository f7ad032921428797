/// Kafka's topic name rules, so names are safe as directory names on every broker.
public enum TopicNameRules {
  public static let lengthMax = 249

  /// Why `name` is not a valid topic name, or nil when it is.
  public static func violation(_ name: String) -> String? {
    if name.isEmpty { return "invalid topic name \"\": empty" }
    if name == "." || name == ".." {
      return "invalid topic name \"\(name)\": \".\" and \"..\" are reserved"
    }
    if name.utf8.count > lengthMax {
      return "invalid topic name: longer than \(lengthMax) characters"
    }
    let allowed = name.utf8.allSatisfy { byte in
      (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
        || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
        || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
        || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }
    if !allowed {
      return "invalid topic name \"\(name)\": only ASCII letters, digits, '.', '_' and '-' "
        + "are allowed"
    }
    return nil
  }
}

/// The topic configs the metaserver accepts, with the same ranges the broker enforces.
public enum TopicConfigRules {
  public static let minInsyncReplicasKey = "min.insync.replicas"
  public static let retentionMsKey = "retention.ms"
  public static let retentionBytesKey = "retention.bytes"
  public static let segmentBytesKey = "segment.bytes"
  public static let segmentMsKey = "segment.ms"
  public static let uncleanLeaderElectionKey = "unclean.leader.election.enable"
  public static let cleanupPolicyKey = "cleanup.policy"

  public static let knownKeys = [
    cleanupPolicyKey, minInsyncReplicasKey, retentionBytesKey, retentionMsKey, segmentBytesKey,
    segmentMsKey, uncleanLeaderElectionKey,
  ]

  /// A segment must hold at least one record batch header (61 bytes).
  public static let segmentBytesMin: Int64 = 61
  public static let valueBytesMax = 1024

  /// Why `configs` are not valid for a topic with `replicationFactor` replicas, or nil.
  public static func violation(_ configs: [String: String], replicationFactor: Int) -> String? {
    for (key, value) in configs.sorted(by: { $0.key < $1.key }) {
      if let violation = violation(key: key, value: value, replicationFactor: replicationFactor) {
        return violation
      }
    }
    return nil
  }

  static func violation(key: String, value: String, replicationFactor: Int) -> String? {
    guard knownKeys.contains(key) else {
      return "unknown topic config \"\(key)\"; valid keys: \(knownKeys.joined(separator: ", "))"
    }
    guard value.utf8.count <= valueBytesMax else {
      return "topic config \(key) is longer than \(valueBytesMax) bytes"
    }
    func integer(_ range: ClosedRange<Int64>) -> String? {
      guard let parsed = Int64(value), range.contains(parsed) else {
        return "topic config \(key)=\"\(value)\" must be an integer in "
          + "\(range.lowerBound)...\(range.upperBound)"
      }
      return nil
    }
    switch key {
    case minInsyncReplicasKey:
      if let violation = integer(1...Int64(Int16.max)) { return violation }
      if let parsed = Int64(value), parsed > Int64(replicationFactor) {
        return "topic config min.insync.replicas=\(parsed) exceeds the replication factor "
          + "\(replicationFactor)"
      }
      return nil
    case retentionMsKey, retentionBytesKey:
      return integer(-1...Int64.max)
    case segmentBytesKey:
      return integer(segmentBytesMin...Int64(Int32.max))
    case segmentMsKey:
      return integer(1...Int64.max)
    case uncleanLeaderElectionKey:
      return value == "true" || value == "false"
        ? nil : "topic config \(key)=\"\(value)\" must be true or false"
    case cleanupPolicyKey:
      return value == "delete"
        ? nil : "topic config cleanup.policy=\"\(value)\" is not supported; only \"delete\" is"
    default:
      return nil
    }
  }

  static func allowsUncleanElection(_ configs: [String: String]) -> Bool {
    configs[uncleanLeaderElectionKey] == "true"
  }
}
