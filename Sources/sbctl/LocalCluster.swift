import Foundation

/// `D/cluster.json`: every process of a local cluster, for `sbctl local`, tests and scripts.
struct LocalCluster: Codable, Equatable {
  var metaservers: [LocalNode]
  var brokers: [LocalNode]
  /// Extra `metaserver` flags given to `local up` (`key=value`, passed as `--key value`),
  /// reused by `local start`.
  var metaserverOptions: [String]
  /// Extra `databroker` flags given to `local up` (`key=value`, passed as `--key value`),
  /// reused by `local start`.
  var brokerOptions: [String]

  static let fileName = "cluster.json"

  init(
    metaservers: [LocalNode], brokers: [LocalNode], metaserverOptions: [String],
    brokerOptions: [String] = []
  ) {
    self.metaservers = metaservers
    self.brokers = brokers
    self.metaserverOptions = metaserverOptions
    self.brokerOptions = brokerOptions
  }

  init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    metaservers = try container.decode([LocalNode].self, forKey: .metaservers)
    brokers = try container.decodeIfPresent([LocalNode].self, forKey: .brokers) ?? []
    metaserverOptions =
      try container.decodeIfPresent([String].self, forKey: .metaserverOptions) ?? []
    brokerOptions = try container.decodeIfPresent([String].self, forKey: .brokerOptions) ?? []
  }

  var allNodes: [LocalNode] { metaservers + brokers }

  /// The node named `role-id` (as in `metaserver-2`), or an error listing the names.
  func node(named name: String) throws -> LocalNode {
    guard let node = allNodes.first(where: { $0.name == name }) else {
      throw LocalClusterError(
        "no node \"\(name)\" in this cluster; nodes: "
          + allNodes.map(\.name).joined(separator: ", "))
    }
    return node
  }

  mutating func update(_ node: LocalNode) {
    if let index = metaservers.firstIndex(where: { $0.name == node.name }) {
      metaservers[index] = node
    } else if let index = brokers.firstIndex(where: { $0.name == node.name }) {
      brokers[index] = node
    }
  }

  /// `host:port,...` of the metaservers' APIs, as brokers and clients take it.
  var metaserverAPIList: String {
    metaservers.compactMap(\.apiAddress).joined(separator: ",")
  }

  /// `host:port,...` of the brokers' client listeners (SB_BROKERS).
  var brokerList: String {
    brokers.compactMap(\.clientAddress).joined(separator: ",")
  }

  /// `1=host:raftport,2=...` of the founding metaservers.
  var initialClusterFlag: String {
    metaservers.map { "\($0.id)=\($0.raftAddress ?? "")" }.joined(separator: ",")
  }

  static func path(in directory: URL) -> URL {
    directory.appendingPathComponent(fileName)
  }

  static func load(from directory: URL) throws -> LocalCluster {
    let file = path(in: directory)
    let data: Data
    do {
      data = try Data(contentsOf: file)
    } catch {
      throw LocalClusterError(
        "no local cluster in \(directory.path): cannot read \(file.path) (start one with "
          + "sbctl local up --dir \(directory.path))")
    }
    do {
      return try JSONDecoder().decode(LocalCluster.self, from: data)
    } catch {
      throw LocalClusterError("\(file.path) is not a valid cluster file: \(error)")
    }
  }

  /// Writes the file atomically (temp file + rename) so readers never see half of it.
  func save(to directory: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let data = try encoder.encode(self)
    do {
      try data.write(to: Self.path(in: directory), options: .atomic)
    } catch {
      throw LocalClusterError("cannot write \(Self.path(in: directory).path): \(error)")
    }
  }
}

/// One process of a local cluster, as listed in `cluster.json`.
struct LocalNode: Codable, Equatable {
  /// "metaserver" or "broker".
  var role: String
  var id: Int
  /// The process id of the last start (it may have exited since; see `LocalProcesses`).
  var pid: Int32
  var raftAddress: String?
  var apiAddress: String?
  var clientAddress: String?
  var httpAddress: String?
  var dataDir: String
  var logFile: String
  /// Brokers only: the file the broker writes its client address to once it is registered
  /// and unfenced (removed before every start).
  var readyFile: String? = nil

  /// `role-id`, as `--node` takes it.
  var name: String { "\(role)-\(id)" }
}

/// A `sbctl local` failure with a message for the operator.
struct LocalClusterError: Error, CustomStringConvertible {
  let message: String

  init(_ message: String) {
    self.message = message
  }

  var description: String { message }
}
