import ArgumentParser
import Foundation
import StreamBusClient
import StreamBusMetaClient

/// `--output`: human-readable table (default), one JSON document, or JSON lines.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
  case table
  case json
  case jsonl
}

/// Flags every command has.
struct CommonOptions: ParsableArguments {
  @Option(help: "Comma-separated host:port list (default: $SB_BROKERS).")
  var brokers: String?

  @Option(
    help: """
      Comma-separated metaserver host:port list (default: $SB_METASERVERS); topic commands \
      then go to the metadata quorum instead of the brokers.
      """)
  var metaservers: String?

  @Option(
    help: """
      Folder of a `sbctl local` cluster: its cluster.json gives the metaservers and brokers \
      that --metaservers and --brokers do not.
      """)
  var clusterDir: String?

  @Option(help: "Output format: table, json (produce and consume also jsonl).")
  var output: OutputFormat = .table

  @Option(help: "How long one request may wait for its response.")
  var requestTimeoutMs: Int64 = 30_000

  /// The client configuration, from `--brokers` or else `SB_BROKERS`.
  func clientConfig(environment: [String: String] = ProcessInfo.processInfo.environment)
    throws -> ClientConfig
  {
    let fromCluster = try localCluster().map(\.brokerList)
    guard let text = brokers ?? fromCluster ?? environment["SB_BROKERS"],
      !text.allSatisfy(\.isWhitespace)
    else {
      throw ValidationError(
        "no brokers: pass --brokers host:port[,host:port...] or set SB_BROKERS"
          + (clusterDir == nil ? "" : " (the local cluster has no brokers)"))
    }
    let parsed: [HostPort]
    do {
      parsed = try ClientConfig.parseBrokers(text)
    } catch let error as StreamBusError {
      throw ValidationError("--brokers: \(error.message)")
    }
    var config = ClientConfig(bootstrapBrokers: parsed, clientId: "sbctl")
    config.requestTimeoutMs = requestTimeoutMs
    return config
  }

  /// Where topic commands go: the metaservers when `--metaservers` is given, else the
  /// brokers when `--brokers` is given, else the `--cluster-dir` cluster's metaservers, else
  /// `SB_METASERVERS`, else `SB_BROKERS`.
  func adminTarget(environment: [String: String] = ProcessInfo.processInfo.environment)
    throws -> AdminTarget
  {
    if let metaservers {
      return .metaservers(try metaClientConfiguration(list: metaservers))
    }
    if brokers == nil, let cluster = try localCluster(), !cluster.metaservers.isEmpty {
      return .metaservers(try metaClientConfiguration(list: cluster.metaserverAPIList))
    }
    if brokers == nil, let fromEnvironment = environment["SB_METASERVERS"],
      !fromEnvironment.allSatisfy(\.isWhitespace)
    {
      return .metaservers(try metaClientConfiguration(list: fromEnvironment))
    }
    return .brokers(try clientConfig(environment: environment))
  }

  func metaClientConfiguration(list: String) throws -> MetaClientConfiguration {
    try makeMetaClientConfiguration(list: list, requestTimeoutMs: requestTimeoutMs)
  }

  /// The `--cluster-dir` cluster, when given.
  func localCluster() throws -> LocalCluster? {
    try loadLocalCluster(clusterDir)
  }

  func requireTableOrJSON() throws {
    if output == .jsonl {
      throw ValidationError("--output jsonl is only for produce and consume; use table or json")
    }
  }
}

/// Where an admin command is sent.
enum AdminTarget {
  case brokers(ClientConfig)
  case metaservers(MetaClientConfiguration)
}

/// Flags of the commands that only the metadata quorum answers (quorum, cluster, broker).
struct MetaOptions: ParsableArguments {
  @Option(help: "Comma-separated metaserver host:port list (default: $SB_METASERVERS).")
  var metaservers: String?

  @Option(
    help: "Folder of a `sbctl local` cluster: its cluster.json gives the metaservers.")
  var clusterDir: String?

  @Option(help: "Output format: table or json.")
  var output: OutputFormat = .table

  @Option(help: "How long one request may take, leader changes and retries included.")
  var requestTimeoutMs: Int64 = 30_000

  func validate() throws {
    if output == .jsonl {
      throw ValidationError("--output jsonl is only for produce and consume; use table or json")
    }
    guard requestTimeoutMs > 0 else {
      throw ValidationError("--request-timeout-ms must be at least 1")
    }
  }

  /// The client configuration, from `--metaservers`, else `--cluster-dir`, else
  /// `SB_METASERVERS`.
  func clientConfiguration(
    environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> MetaClientConfiguration {
    let fromCluster = try loadLocalCluster(clusterDir).map(\.metaserverAPIList)
    guard let text = metaservers ?? fromCluster ?? environment["SB_METASERVERS"],
      !text.allSatisfy(\.isWhitespace)
    else {
      throw ValidationError(
        "no metaservers: pass --metaservers host:port[,host:port...] or set SB_METASERVERS")
    }
    return try makeMetaClientConfiguration(list: text, requestTimeoutMs: requestTimeoutMs)
  }
}

/// The local cluster in `directory` (nil without one); a missing or invalid cluster.json is
/// a usage error.
func loadLocalCluster(_ directory: String?) throws -> LocalCluster? {
  guard let directory else { return nil }
  do {
    return try LocalCluster.load(
      from: URL(fileURLWithPath: directory, isDirectory: true).standardizedFileURL)
  } catch let error as LocalClusterError {
    throw ValidationError("--cluster-dir: \(error.message)")
  }
}

/// Parses "host:port,host:port" into a client configuration for sbctl.
func makeMetaClientConfiguration(list: String, requestTimeoutMs: Int64) throws
  -> MetaClientConfiguration
{
  var addresses: [HostPort] = []
  for entry in list.split(separator: ",", omittingEmptySubsequences: false) {
    let trimmed = entry.trimmingCharacters(in: .whitespaces)
    guard !trimmed.isEmpty else {
      throw ValidationError("--metaservers: empty entry in \"\(list)\"")
    }
    do {
      addresses.append(try HostPort(parsing: trimmed))
    } catch {
      throw ValidationError("--metaservers: invalid address \"\(trimmed)\" (expected host:port)")
    }
  }
  guard requestTimeoutMs > 0 else {
    throw ValidationError("--request-timeout-ms must be at least 1")
  }
  var configuration = MetaClientConfiguration(
    bootstrap: addresses, requestTimeoutMs: requestTimeoutMs)
  configuration.attemptTimeoutMs = min(configuration.attemptTimeoutMs, requestTimeoutMs)
  configuration.clientID = "sbctl"
  return configuration
}

/// Runs `body` with a MetaClient that is closed afterwards, whatever happens.
func withMetaClient<Result>(
  _ configuration: MetaClientConfiguration, _ body: (MetaClient) async throws -> Result
) async throws -> Result {
  let client = MetaClient(configuration: configuration)
  do {
    let result = try await body(client)
    await client.close()
    return result
  } catch {
    await client.close()
    throw error
  }
}
