import StreamBusProtocol

/// The metaserver's API keys (inside ``ApiKey/internalRange``) and the versions this build
/// speaks. Brokers and admin tools send them with the ordinary ``RequestHeader``.
public enum MetaApiKey {
  public static let brokerRegister = ApiKey(rawValue: 1100)
  public static let brokerHeartbeat = ApiKey(rawValue: 1101)
  public static let alterPartition = ApiKey(rawValue: 1102)
  public static let allocateProducerIds = ApiKey(rawValue: 1103)
  public static let fetchMetadata = ApiKey(rawValue: 1104)
  public static let createTopics = ApiKey(rawValue: 1110)
  public static let deleteTopics = ApiKey(rawValue: 1111)
  public static let alterConfigs = ApiKey(rawValue: 1112)
  public static let describeCluster = ApiKey(rawValue: 1113)
  public static let listTopics = ApiKey(rawValue: 1114)
  public static let describeTopic = ApiKey(rawValue: 1115)
  public static let quorumStatus = ApiKey(rawValue: 1116)
  public static let addLearner = ApiKey(rawValue: 1117)
  public static let addVoter = ApiKey(rawValue: 1118)
  public static let removeVoter = ApiKey(rawValue: 1119)
  public static let transferLeadership = ApiKey(rawValue: 1120)
  public static let electPreferredLeaders = ApiKey(rawValue: 1121)

  /// Every metaserver API with its name and the versions this build accepts, in key order.
  public static let all: [(apiKey: ApiKey, name: String, versions: ClosedRange<Int16>)] = [
    // 1: the data directory's identity.
    (brokerRegister, "BrokerRegister", 0...1),
    (brokerHeartbeat, "BrokerHeartbeat", 0...0),
    (alterPartition, "AlterPartition", 0...0),
    (allocateProducerIds, "AllocateProducerIds", 0...0),
    (fetchMetadata, "FetchMetadata", 0...0),
    (createTopics, "CreateTopics", 0...0),
    (deleteTopics, "DeleteTopics", 0...0),
    (alterConfigs, "AlterConfigs", 0...0),
    (describeCluster, "DescribeCluster", 0...0),
    (listTopics, "ListTopics", 0...0),
    (describeTopic, "DescribeTopic", 0...0),
    (quorumStatus, "QuorumStatus", 0...0),
    (addLearner, "AddLearner", 0...0),
    (addVoter, "AddVoter", 0...0),
    (removeVoter, "RemoveVoter", 0...0),
    (transferLeadership, "TransferLeadership", 0...0),
    (electPreferredLeaders, "ElectPreferredLeaders", 0...0),
  ]

  /// Versions this build accepts, by api key.
  public static let supported: [ApiKey: ClosedRange<Int16>] = Dictionary(
    uniqueKeysWithValues: all.map { ($0.apiKey, $0.versions) })

  private static let names: [ApiKey: String] = Dictionary(
    uniqueKeysWithValues: all.map { ($0.apiKey, $0.name) })

  /// The versions of `apiKey` this build accepts; nil when it is not a metaserver API.
  public static func supportedVersions(_ apiKey: ApiKey) -> ClosedRange<Int16>? {
    supported[apiKey]
  }

  /// "CreateTopics" for a metaserver key, otherwise ``ApiKey/name``.
  public static func name(_ apiKey: ApiKey) -> String {
    names[apiKey] ?? apiKey.name
  }

  /// Whether `apiKey` is one of the metaserver's APIs (a server sharing a listener with
  /// other APIs routes on this).
  public static func isMetaApi(_ apiKey: ApiKey) -> Bool {
    supported[apiKey] != nil
  }
}
