/// Identifies an API on the wire (i16). Public APIs reuse Kafka's numbers; internal
/// (broker ↔ metaserver) APIs live in ``internalRange``.
public struct ApiKey: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public let rawValue: Int16

  public init(rawValue: Int16) {
    self.rawValue = rawValue
  }

  public static let produce = ApiKey(rawValue: 0)
  public static let fetch = ApiKey(rawValue: 1)
  public static let listOffsets = ApiKey(rawValue: 2)
  public static let metadata = ApiKey(rawValue: 3)
  public static let apiVersions = ApiKey(rawValue: 18)
  public static let createTopics = ApiKey(rawValue: 19)
  public static let deleteTopics = ApiKey(rawValue: 20)
  public static let initProducerId = ApiKey(rawValue: 22)
  public static let replicaStatus = ApiKey(rawValue: 1200)

  /// Reserved for internal APIs between brokers and the metaserver (broker registration,
  /// heartbeats, metadata fetch, AlterPartition, producer id allocation, quorum admin).
  /// Clients never send these; a public listener may reject them.
  public static let internalRange: ClosedRange<Int16> = 1000...1999

  /// Every API this build implements, with the versions it accepts.
  public static let supported: [ApiKey: ClosedRange<Int16>] = [
    .produce: 0...0,
    .fetch: 0...0,
    .listOffsets: 0...0,
    .metadata: 0...0,
    .apiVersions: 0...0,
    .createTopics: 0...0,
    .deleteTopics: 0...0,
    .initProducerId: 0...0,
    .replicaStatus: 0...0,
  ]

  public var supportedVersions: ClosedRange<Int16>? { ApiKey.supported[self] }

  public var isInternal: Bool { ApiKey.internalRange.contains(rawValue) }

  public var name: String {
    switch self {
    case .produce: return "Produce"
    case .fetch: return "Fetch"
    case .listOffsets: return "ListOffsets"
    case .metadata: return "Metadata"
    case .apiVersions: return "ApiVersions"
    case .createTopics: return "CreateTopics"
    case .deleteTopics: return "DeleteTopics"
    case .initProducerId: return "InitProducerId"
    case .replicaStatus: return "ReplicaStatus"
    default: return isInternal ? "Internal(\(rawValue))" : "Unknown(\(rawValue))"
    }
  }

  public var description: String { name }
}
