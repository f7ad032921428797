import StreamBusStorage

/// What the broker knows about one topic; persisted in the data directory.
public struct TopicDescription: Sendable, Equatable {
  public var name: String
  public var partitionCount: Int32
  public var replicationFactor: Int16
  public var config: TopicConfig

  public init(name: String, partitionCount: Int32, replicationFactor: Int16, config: TopicConfig) {
    precondition(partitionCount >= 1, "a topic has at least one partition")
    self.name = name
    self.partitionCount = partitionCount
    self.replicationFactor = replicationFactor
    self.config = config
  }
}

/// A topic and partition number.
public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
  public var topic: String
  public var partition: Int32

  public init(topic: String, partition: Int32) {
    self.topic = topic
    self.partition = partition
  }

  /// `<topic>-<partition>`, also the partition's directory name. Topic names may contain
  /// "-", so parsing splits at the last one (partition numbers never contain it).
  public var description: String { "\(topic)-\(partition)" }
}

/// Layout of the data directory:
///
/// ```
/// <data-dir>/.lock                    held (flock) while a broker uses the directory
/// <data-dir>/directory.id             the directory's identity (cluster brokers)
/// <data-dir>/topics/<name>            one metadata file per topic (AtomicFile)
/// <data-dir>/<name>-<partition>/      one PartitionLog per partition
/// ```
///
/// The topic file is the commit point: a partition directory without one (a crash during
/// create or delete) is removed on the next start.
public struct TopicStore: Sendable {
  public let dataDirectory: String
  public let fileSystem: any LogFileSystem

  public static let topicsDirectoryName = "topics"
  static let formatVersion = 1

  public init(dataDirectory: String, fileSystem: any LogFileSystem) {
    self.dataDirectory = dataDirectory
    self.fileSystem = fileSystem
  }

  public var topicsDirectory: String { dataDirectory + "/" + Self.topicsDirectoryName }

  public func topicFilePath(_ name: String) -> String {
    // No suffix: a 249-byte name plus AtomicFile's ".tmp" must stay within NAME_MAX (255).
    topicsDirectory + "/" + name
  }

  public func partitionDirectory(_ topicPartition: TopicPartition) -> String {
    dataDirectory + "/" + topicPartition.description
  }

  /// Creates the directories if missing.
  public func prepare() throws {
    try fileSystem.createDirectory(dataDirectory)
    try fileSystem.createDirectory(topicsDirectory)
  }

  /// Writes (or replaces) a topic's metadata file atomically.
  public func save(_ topic: TopicDescription) throws {
    try AtomicFile.write(topicFilePath(topic.name), Self.encode(topic), fileSystem: fileSystem)
  }

  /// Removes a topic's metadata file and makes the removal durable.
  public func removeTopicFile(_ name: String) throws {
    let path = topicFilePath(name)
    if fileSystem.fileExists(path) {
      try fileSystem.remove(path)
    }
    try fileSystem.syncDirectory(topicsDirectory)
  }

  /// Every topic file in the directory; leftover temporary files are deleted.
  ///
  /// A topic's file is named after the topic and names it inside. Topic names may end in
  /// ".tmp" too, so a leftover AtomicFile temporary is recognized by its content: a file
  /// ending in ".tmp" that does not describe the topic of its own name.
  public func loadAll(defaults: TopicDefaults) throws -> [TopicDescription] {
    var topics: [TopicDescription] = []
    for name in try fileSystem.contentsOfDirectory(topicsDirectory).sorted() {
      let path = topicsDirectory + "/" + name
      guard (try? TopicName.validate(name)) != nil,
        let bytes = try AtomicFile.read(path, fileSystem: fileSystem)
      else { continue }
      let topic: TopicDescription
      do {
        topic = try Self.decode(bytes, path: path, defaults: defaults)
      } catch  where name.hasSuffix(AtomicFile.temporarySuffix) {
        try fileSystem.remove(path)
        continue
      }
      guard topic.name == name else {
        if name.hasSuffix(AtomicFile.temporarySuffix) {
          try fileSystem.remove(path)
          continue
        }
        throw StorageError(
          .corruptLog, "\(path) describes topic \"\(topic.name)\", not its file name", path: path)
      }
      topics.append(topic)
    }
    return topics
  }

  /// Directory entries of the data directory that look like partition directories
  /// (`<valid topic name>-<partition number>`), with their parsed names.
  public func partitionDirectories() throws -> [(name: String, topicPartition: TopicPartition)] {
    var found: [(String, TopicPartition)] = []
    for name in try fileSystem.contentsOfDirectory(dataDirectory) {
      guard let dash = name.lastIndex(of: "-"),
        let partition = Int32(name[name.index(after: dash)...]), partition >= 0,
        String(partition) == name[name.index(after: dash)...]
      else { continue }
      let topic = String(name[..<dash])
      guard (try? TopicName.validate(topic)) != nil else { continue }
      found.append((name, TopicPartition(topic: topic, partition: partition)))
    }
    return found
  }

  // MARK: File format

  /// `key=value` lines: version, name, partitions, replication.factor, then one
  /// `config.<key>=<value>` per override.
  static func encode(_ topic: TopicDescription) -> [UInt8] {
    var text = "version=\(formatVersion)\nname=\(topic.name)\n"
    text += "partitions=\(topic.partitionCount)\nreplication.factor=\(topic.replicationFactor)\n"
    for (key, value) in topic.config.overrides {
      text += "config.\(key)=\(value)\n"
    }
    return Array(text.utf8)
  }

  static func decode(_ bytes: [UInt8], path: String, defaults: TopicDefaults) throws
    -> TopicDescription
  {
    func corrupt(_ reason: String) -> StorageError {
      StorageError(.corruptLog, "topic file \(path): \(reason)", path: path)
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw corrupt("not UTF-8")
    }
    var fields: [String: String] = [:]
    var configs: [(key: String, value: String?)] = []
    for line in text.split(separator: "\n") {
      guard let equals = line.firstIndex(of: "=") else { throw corrupt("line \"\(line)\"") }
      let key = String(line[..<equals])
      let value = String(line[line.index(after: equals)...])
      if key.hasPrefix("config.") {
        configs.append((String(key.dropFirst("config.".count)), value))
      } else {
        guard fields.updateValue(value, forKey: key) == nil else {
          throw corrupt("\(key) given twice")
        }
      }
    }
    guard fields["version"] == String(formatVersion) else {
      throw corrupt("unsupported version \(fields["version"] ?? "(missing)")")
    }
    guard let name = fields["name"], (try? TopicName.validate(name)) != nil else {
      throw corrupt("missing or invalid name")
    }
    guard let partitions = fields["partitions"].flatMap({ Int32($0) }), partitions >= 1 else {
      throw corrupt("missing or invalid partitions")
    }
    guard let replicationFactor = fields["replication.factor"].flatMap({ Int16($0) }),
      replicationFactor >= 1
    else {
      throw corrupt("missing or invalid replication.factor")
    }
    let config: TopicConfig
    do {
      config = try TopicConfig(configs, defaults: defaults)
    } catch {
      throw corrupt(error.message)
    }
    return TopicDescription(
      name: name, partitionCount: partitions, replicationFactor: replicationFactor,
      config: config)
  }
}
