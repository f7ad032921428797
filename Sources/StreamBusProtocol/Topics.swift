/// CreateTopics (api key 19).
public struct CreateTopicsRequest: WireBody {
  public static let apiKey = ApiKey.createTopics

  public var topics: [Topic]
  public var timeoutMs: Int32
  /// Check the request without creating anything.
  public var validateOnly: Bool

  public struct Topic: Sendable, Equatable {
    public var name: String
    /// -1 asks for the server default.
    public var numPartitions: Int32
    /// -1 asks for the server default.
    public var replicationFactor: Int16
    public var configs: [Config]

    public init(
      name: String, numPartitions: Int32, replicationFactor: Int16, configs: [Config] = []
    ) {
      self.name = name
      self.numPartitions = numPartitions
      self.replicationFactor = replicationFactor
      self.configs = configs
    }
  }

  public struct Config: Sendable, Equatable {
    public var key: String
    /// nil means "use the default", same as leaving the key out.
    public var value: String?

    public init(key: String, value: String?) {
      self.key = key
      self.value = value
    }
  }

  public init(topics: [Topic], timeoutMs: Int32, validateOnly: Bool = false) {
    self.topics = topics
    self.timeoutMs = timeoutMs
    self.validateOnly = validateOnly
  }

  static let topicBytesMin = EncodedBytesMin.string + 4 + 2 + EncodedBytesMin.array
  static let configBytesMin = 2 * EncodedBytesMin.string

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray("createTopics.topics", elementBytesMin: Self.topicBytesMin) {
      reader in
      return Topic(
        name: try reader.readString("createTopics.topics.name"),
        numPartitions: try reader.readInt32("createTopics.topics.numPartitions"),
        replicationFactor: try reader.readInt16("createTopics.topics.replicationFactor"),
        configs: try reader.readArray(
          "createTopics.topics.configs", elementBytesMin: Self.configBytesMin
        ) {
          reader in
          Config(
            key: try reader.readString("createTopics.topics.configs.key"),
            value: try reader.readNullableString("createTopics.topics.configs.value"))
        })
    }
    timeoutMs = try reader.readInt32("createTopics.timeoutMs")
    validateOnly = try reader.readBool("createTopics.validateOnly")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeInt32(topic.numPartitions)
      writer.writeInt16(topic.replicationFactor)
      writer.writeArray(topic.configs) { writer, config in
        writer.writeString(config.key)
        writer.writeNullableString(config.value)
      }
    }
    writer.writeInt32(timeoutMs)
    writer.writeBool(validateOnly)
  }
}

public struct CreateTopicsResponse: WireBody {
  public static let apiKey = ApiKey.createTopics

  public var topics: [Topic]

  public struct Topic: Sendable, Equatable {
    public var name: String
    public var errorCode: ErrorCode
    public var errorMessage: String?
    public var numPartitions: Int32
    public var replicationFactor: Int16

    public init(
      name: String, errorCode: ErrorCode, errorMessage: String? = nil, numPartitions: Int32,
      replicationFactor: Int16
    ) {
      self.name = name
      self.errorCode = errorCode
      self.errorMessage = errorMessage
      self.numPartitions = numPartitions
      self.replicationFactor = replicationFactor
    }
  }

  public init(topics: [Topic]) {
    self.topics = topics
  }

  static let topicBytesMin = EncodedBytesMin.string + 2 + EncodedBytesMin.string + 4 + 2

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray(
      "createTopicsResponse.topics", elementBytesMin: Self.topicBytesMin
    ) { reader in
      return Topic(
        name: try reader.readString("createTopicsResponse.topics.name"),
        errorCode: ErrorCode(
          rawValue: try reader.readInt16("createTopicsResponse.topics.errorCode")),
        errorMessage: try reader.readNullableString("createTopicsResponse.topics.errorMessage"),
        numPartitions: try reader.readInt32("createTopicsResponse.topics.numPartitions"),
        replicationFactor: try reader.readInt16("createTopicsResponse.topics.replicationFactor"))
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeInt16(topic.errorCode.rawValue)
      writer.writeErrorMessage(topic.errorMessage)
      writer.writeInt32(topic.numPartitions)
      writer.writeInt16(topic.replicationFactor)
    }
  }
}

/// DeleteTopics (api key 20).
public struct DeleteTopicsRequest: WireBody {
  public static let apiKey = ApiKey.deleteTopics

  public var names: [String]
  public var timeoutMs: Int32

  public init(names: [String], timeoutMs: Int32) {
    self.names = names
    self.timeoutMs = timeoutMs
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    names = try reader.readArray("deleteTopics.names", elementBytesMin: EncodedBytesMin.string) {
      try $0.readString("deleteTopics.names")
    }
    timeoutMs = try reader.readInt32("deleteTopics.timeoutMs")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(names) { $0.writeString($1) }
    writer.writeInt32(timeoutMs)
  }
}

public struct DeleteTopicsResponse: WireBody {
  public static let apiKey = ApiKey.deleteTopics

  public var topics: [Topic]

  public struct Topic: Sendable, Equatable {
    public var name: String
    public var errorCode: ErrorCode
    public var errorMessage: String?

    public init(name: String, errorCode: ErrorCode, errorMessage: String? = nil) {
      self.name = name
      self.errorCode = errorCode
      self.errorMessage = errorMessage
    }
  }

  public init(topics: [Topic]) {
    self.topics = topics
  }

  static let topicBytesMin = EncodedBytesMin.string + 2 + EncodedBytesMin.string

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray(
      "deleteTopicsResponse.topics", elementBytesMin: Self.topicBytesMin
    ) { reader in
      return Topic(
        name: try reader.readString("deleteTopicsResponse.topics.name"),
        errorCode: ErrorCode(
          rawValue: try reader.readInt16("deleteTopicsResponse.topics.errorCode")),
        errorMessage: try reader.readNullableString("deleteTopicsResponse.topics.errorMessage"))
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeInt16(topic.errorCode.rawValue)
      writer.writeErrorMessage(topic.errorMessage)
    }
  }
}
