import ArgumentParser
import Foundation
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusTransport

struct LocalCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "local",
    abstract: "Run a StreamBus cluster on this machine as separate processes.",
    discussion: """
      Every process gets a folder under --dir with its data directory and log file; \
      DIR/cluster.json lists each process (role, id, pid, addresses, data dir, log file) for \
      scripts and tests. Processes run detached from sbctl (own session), so they keep \
      running after it exits; stop them with `sbctl local down`.
      """,
    subcommands: [
      LocalUpCommand.self, LocalStatusCommand.self, LocalStopCommand.self,
      LocalStartCommand.self, LocalDownCommand.self, LocalEnvCommand.self,
    ])
}

/// `--dir`, shared by every `local` subcommand.
struct LocalDirectoryOption: ParsableArguments {
  @Option(help: "Folder of the local cluster (holds cluster.json, data and logs).")
  var dir: String

  var url: URL {
    URL(fileURLWithPath: dir, isDirectory: true).standardizedFileURL
  }
}

/// Runs a `local` subcommand body: a `LocalClusterError` becomes one stderr line and exit 1.
private func runLocal(_ body: () async throws -> Void) async throws {
  do {
    try await body()
  } catch let error as LocalClusterError {
    writeError("sbctl: error: \(error.message)")
    throw ExitCode(ExitStatus.requestFailed)
  }
}

private func writeError(_ text: String) {
  FileHandle.standardError.write(Data((text + "\n").utf8))
}

private func writeOutput(_ text: String) {
  FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

struct LocalUpCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "up",
    abstract: "Start a new local cluster (metaservers, then data brokers) and wait until ready.",
    discussion: """
      Metaserver N (from 1) listens on 127.0.0.1: Raft on BASE+3(N-1), API on BASE+3(N-1)+1 \
      and HTTP on BASE+3(N-1)+2 with --base-port, or on free ports picked at start. "Ready" \
      means its /readyz answers 200: a leader is elected and the node applied its log. \
      Broker N (from 1) runs `databroker --metaservers ... --broker-id N` and listens on \
      127.0.0.1:BASE+3M+(N-1) for M metaservers, or on a free port; it is ready once it \
      wrote its ready file (registered and unfenced). Then the topic `demo` (3 partitions, \
      replication factor min(3, brokers)) is created unless --no-demo-topic or --brokers 0.
      """)

  @OptionGroup var directory: LocalDirectoryOption

  @Option(help: "Number of metaservers (the Raft quorum).")
  var metaservers: Int = 3

  @Option(help: "Number of data brokers (0: metaservers only).")
  var brokers: Int = 3

  @Option(help: "First port of a contiguous range; default: free ports picked at start.")
  var basePort: Int?

  @Option(
    name: .customLong("metaserver-option"),
    help: "Extra metaserver setting KEY=VALUE, passed as --KEY VALUE (repeatable).")
  var metaserverOptions: [String] = []

  @Option(
    name: .customLong("broker-option"),
    help: "Extra databroker setting KEY=VALUE, passed as --KEY VALUE (repeatable).")
  var brokerOptions: [String] = []

  @Option(help: "How long to wait for every metaserver's /readyz and every broker, in ms.")
  var readyTimeoutMs: Int = 30_000

  @Flag(help: "Do not create the demo topic.")
  var noDemoTopic = false

  /// Ports `up` needs: Raft, API and HTTP per metaserver, one client port per broker.
  var portCount: Int { 3 * metaservers + brokers }

  func validate() throws {
    guard (1...9).contains(metaservers) else {
      throw ValidationError("--metaservers must be 1...9, got \(metaservers)")
    }
    guard (0...32).contains(brokers) else {
      throw ValidationError("--brokers must be 0...32, got \(brokers)")
    }
    if let basePort, !(1024...(65535 - portCount)).contains(basePort) {
      throw ValidationError(
        "--base-port must be 1024...\(65535 - portCount) for \(metaservers) metaservers and "
          + "\(brokers) brokers")
    }
    for (flag, options) in [
      ("--metaserver-option", metaserverOptions), ("--broker-option", brokerOptions),
    ] {
      for option in options {
        guard let equals = option.firstIndex(of: "="), equals != option.startIndex,
          !option.hasPrefix("-")
        else {
          throw ValidationError("\(flag) wants KEY=VALUE, got \"\(option)\"")
        }
      }
    }
  }

  func run() async throws {
    try await runLocal {
      let root = directory.url
      if FileManager.default.fileExists(atPath: LocalCluster.path(in: root).path) {
        let existing = try LocalCluster.load(from: root)
        let running = existing.allNodes.filter(LocalProcesses.isRunning)
        if !running.isEmpty {
          throw LocalClusterError(
            "a cluster already runs in \(root.path) ("
              + running.map(\.name).joined(separator: ", ")
              + "); see sbctl local status, or stop it with sbctl local down")
        }
        throw LocalClusterError(
          "\(root.path) already holds a stopped cluster; resume it with sbctl local start "
            + "--dir \(root.path), or remove it with sbctl local down --purge")
      }
      let executable = try LocalProcesses.executable(named: "metaserver")
      let brokerExecutable =
        brokers > 0 ? try LocalProcesses.executable(named: "databroker") : executable
      let ports: [Int]
      if let basePort {
        ports = Array(basePort..<basePort + portCount)
      } else {
        ports = try LocalProcesses.freePorts(portCount)
      }
      var nodes: [LocalNode] = []
      for index in 0..<metaservers {
        let id = index + 1
        let folder = root.appendingPathComponent("metaserver-\(id)", isDirectory: true)
        try createDirectory(folder.appendingPathComponent("data", isDirectory: true))
        nodes.append(
          LocalNode(
            role: "metaserver", id: id, pid: 0,
            raftAddress: "127.0.0.1:\(ports[3 * index])",
            apiAddress: "127.0.0.1:\(ports[3 * index + 1])",
            clientAddress: nil,
            httpAddress: "127.0.0.1:\(ports[3 * index + 2])",
            dataDir: folder.appendingPathComponent("data").path,
            logFile: folder.appendingPathComponent("metaserver.log").path))
      }
      var cluster = LocalCluster(
        metaservers: nodes, brokers: [], metaserverOptions: metaserverOptions,
        brokerOptions: brokerOptions)
      for node in cluster.metaservers {
        var started = node
        started.pid = try LocalStarter.startMetaserver(
          node, in: cluster, executable: executable)
        cluster.update(started)
        // Saved after every start: if a later start fails, `local down` still finds this one.
        try cluster.save(to: root)
      }
      do {
        try await LocalStarter.waitUntilReady(cluster.metaservers, timeoutMs: readyTimeoutMs)
      } catch let error as LocalClusterError {
        throw LocalClusterError(
          error.message + "\nthe processes that started are left running for inspection; "
            + "stop them with sbctl local down --dir \(root.path)")
      }
      for index in 0..<brokers {
        let id = index + 1
        let folder = root.appendingPathComponent("broker-\(id)", isDirectory: true)
        try createDirectory(folder.appendingPathComponent("data", isDirectory: true))
        cluster.brokers.append(
          LocalNode(
            role: "broker", id: id, pid: 0, raftAddress: nil, apiAddress: nil,
            clientAddress: "127.0.0.1:\(ports[3 * metaservers + index])", httpAddress: nil,
            dataDir: folder.appendingPathComponent("data").path,
            logFile: folder.appendingPathComponent("broker.log").path,
            readyFile: folder.appendingPathComponent("ready").path))
      }
      for node in cluster.brokers {
        var started = node
        started.pid = try LocalBrokers.start(node, in: cluster, executable: brokerExecutable)
        cluster.update(started)
        try cluster.save(to: root)
      }
      var demoReplicationFactor: Int16?
      do {
        try await LocalBrokers.waitUntilReady(cluster.brokers, timeoutMs: readyTimeoutMs)
        if !cluster.brokers.isEmpty && !noDemoTopic {
          demoReplicationFactor = try await LocalBrokers.createDemoTopic(
            in: cluster, timeoutMs: readyTimeoutMs)
        }
      } catch let error as LocalClusterError {
        throw LocalClusterError(
          error.message + "\nthe processes that started are left running for inspection; "
            + "stop them with sbctl local down --dir \(root.path)")
      }
      report(cluster, root: root, demoReplicationFactor: demoReplicationFactor)
    }
  }

  private func report(_ cluster: LocalCluster, root: URL, demoReplicationFactor: Int16?) {
    let brokerCount = cluster.brokers.isEmpty ? "" : ", \(cluster.brokers.count) brokers"
    writeOutput(
      "local cluster up in \(root.path): \(cluster.metaservers.count) metaservers\(brokerCount)")
    for node in cluster.metaservers {
      writeOutput(
        "  \(node.name) pid \(node.pid) api \(node.apiAddress ?? "-") http \(node.httpAddress ?? "-")"
      )
    }
    for node in cluster.brokers {
      writeOutput(
        "  \(node.name) pid \(node.pid) client \(node.clientAddress ?? "-") log \(node.logFile)")
    }
    if let demoReplicationFactor {
      writeOutput(
        "created topic \(LocalBrokers.demoTopic) (partitions: \(LocalBrokers.demoPartitions), "
          + "replication factor: \(demoReplicationFactor))")
    }
    writeOutput("use it: eval \"$(sbctl local env --dir \(root.path))\"")
    if !cluster.brokers.isEmpty {
      let topic = demoReplicationFactor == nil ? "TOPIC" : LocalBrokers.demoTopic
      writeOutput("  sbctl cluster status")
      writeOutput("  sbctl topic describe \(topic)")
      writeOutput("  echo hello | sbctl produce \(topic) --acks all")
      writeOutput("  sbctl consume \(topic) --from beginning --timeout-ms 1000")
      writeOutput("stop it: sbctl local down --dir \(root.path)")
    }
  }

  private func createDirectory(_ url: URL) throws {
    do {
      try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    } catch {
      throw LocalClusterError("cannot create \(url.path): \(error)")
    }
  }
}

/// Starting nodes and waiting for them, shared by `up` and `start`.
enum LocalStarter {
  static func metaserverArguments(_ node: LocalNode, in cluster: LocalCluster) -> [String] {
    var arguments = [
      "--node-id", "\(node.id)", "--data-dir", node.dataDir,
      "--raft-listen", node.raftAddress ?? "", "--api-listen", node.apiAddress ?? "",
      "--http-listen", node.httpAddress ?? "", "--initial-cluster", cluster.initialClusterFlag,
    ]
    for option in cluster.metaserverOptions {
      guard let equals = option.firstIndex(of: "=") else { continue }
      arguments.append("--" + option[..<equals])
      arguments.append(String(option[option.index(after: equals)...]))
    }
    return arguments
  }

  static func startMetaserver(_ node: LocalNode, in cluster: LocalCluster, executable: String)
    throws -> Int32
  {
    let header = "==== sbctl local: starting \(node.name) at \(Date())\n"
    appendToLog(node.logFile, header)
    return try LocalProcesses.spawnDaemon(
      executable: executable, arguments: metaserverArguments(node, in: cluster),
      logFile: node.logFile)
  }

  /// Starts a stopped node of the cluster in `root` again with its data, and records its new
  /// pid in cluster.json. Does not wait for readiness.
  static func startAgain(_ node: LocalNode, in cluster: inout LocalCluster, root: URL) throws
    -> LocalNode
  {
    var restarted = node
    if node.role == "broker" {
      restarted.pid = try LocalBrokers.start(
        node, in: cluster, executable: try LocalProcesses.executable(named: "databroker"))
    } else {
      restarted.pid = try startMetaserver(
        node, in: cluster, executable: try LocalProcesses.executable(named: "metaserver"))
    }
    cluster.update(restarted)
    try cluster.save(to: root)
    return restarted
  }

  static func appendToLog(_ path: String, _ text: String) {
    if !FileManager.default.fileExists(atPath: path) {
      _ = FileManager.default.createFile(atPath: path, contents: nil)
    }
    if let handle = FileHandle(forWritingAtPath: path) {
      handle.seekToEndOfFile()
      handle.write(Data(text.utf8))
      try? handle.close()
    }
  }

  /// Polls every node's `/readyz` until all answer 200; fails early when a node exits and
  /// at the timeout, naming the node, its last answer and its log file.
  static func waitUntilReady(_ nodes: [LocalNode], timeoutMs: Int) async throws {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var pending = nodes
    var lastAnswers: [String: String] = [:]
    while !pending.isEmpty {
      var stillPending: [LocalNode] = []
      for node in pending {
        guard LocalProcesses.isRunning(node) else {
          throw LocalClusterError(
            "\(node.name) (pid \(node.pid)) exited during start; its log \(node.logFile) ends "
              + "with:\n\(LocalProcesses.logTail(node.logFile))")
        }
        if let response = BlockingHTTP.request(
          address: node.httpAddress ?? "", path: "/readyz", timeoutMs: 500)
        {
          if response.status == 200 { continue }
          lastAnswers[node.name] =
            "\(response.status) \(response.body.trimmingCharacters(in: .whitespacesAndNewlines))"
        } else {
          lastAnswers[node.name] = "no HTTP answer on \(node.httpAddress ?? "-")"
        }
        stillPending.append(node)
      }
      pending = stillPending
      if pending.isEmpty { break }
      guard ContinuousClock.now < deadline else {
        let details = pending.map {
          "\($0.name): last /readyz: \(lastAnswers[$0.name] ?? "none"); log \($0.logFile)"
        }
        throw LocalClusterError(
          "not ready within \(timeoutMs) ms:\n  " + details.joined(separator: "\n  ")
            + "\n\(pending[0].name)'s log ends with:\n"
            + LocalProcesses.logTail(pending[0].logFile))
      }
      try await Task.sleep(for: .milliseconds(100))
    }
  }
}

struct LocalStatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status",
    abstract: "Show every process of the local cluster: running or not, ready or not.")

  @OptionGroup var directory: LocalDirectoryOption

  @Option(help: "Output format: table or json.")
  var output: OutputFormat = .table

  func validate() throws {
    if output == .jsonl {
      throw ValidationError("--output jsonl is only for produce and consume; use table or json")
    }
  }

  func run() async throws {
    try await runLocal {
      let cluster = try LocalCluster.load(from: directory.url)
      let registrations = await brokerRegistrations(cluster)
      var rows: [[String]] = []
      var objects: [JSONValue] = []
      for node in cluster.allNodes {
        let running = LocalProcesses.isRunning(node)
        let paused = running && LocalProcesses.isPaused(node)
        var readiness = "-"
        if paused {
          readiness = "not answering (process stopped; resume with kill -CONT \(node.pid))"
        } else if running, node.role == "broker" {
          readiness = Self.brokerReadiness(node, registrations: registrations)
        } else if running, let http = node.httpAddress {
          if let response = BlockingHTTP.request(address: http, path: "/readyz", timeoutMs: 1_000) {
            readiness = response.status == 200 ? "ready" : "not ready"
            let reason = response.body.trimmingCharacters(in: .whitespacesAndNewlines)
            if !reason.isEmpty { readiness = reason }
          } else {
            readiness = "no HTTP answer"
          }
        }
        rows.append([
          node.name, running ? "\(node.pid)" : "-",
          paused ? "paused" : running ? "running" : "stopped",
          node.apiAddress ?? node.clientAddress ?? "-", node.httpAddress ?? "-", readiness,
        ])
        objects.append(
          .object([
            ("role", .string(node.role)), ("id", .integer(Int64(node.id))),
            ("pid", .integer(Int64(node.pid))), ("running", .bool(running)),
            ("paused", .bool(paused)),
            ("apiAddress", node.apiAddress.map(JSONValue.string) ?? .null),
            ("clientAddress", node.clientAddress.map(JSONValue.string) ?? .null),
            ("httpAddress", node.httpAddress.map(JSONValue.string) ?? .null),
            ("readiness", .string(readiness)), ("logFile", .string(node.logFile)),
          ]))
      }
      switch output {
      case .json:
        writeOutput(JSONValue.array(objects).rendered())
      default:
        let header = ["NODE", "PID", "STATE", "ADDRESS", "HTTP", "READINESS"]
        writeOutput(renderTable(header: header, rows: rows))
      }
    }
  }

  /// The brokers as the metaservers see them (nil when the quorum does not answer quickly).
  private func brokerRegistrations(_ cluster: LocalCluster) async -> [Int32: MetaBroker]? {
    guard !cluster.brokers.isEmpty,
      let configuration = try? makeMetaClientConfiguration(
        list: cluster.metaserverAPIList, requestTimeoutMs: 2_000)
    else { return nil }
    guard
      let brokers = try? await withMetaClient(configuration, { try await $0.describeCluster() })
        .brokers
    else { return nil }
    return Dictionary(brokers.map { ($0.brokerID, $0) }, uniquingKeysWith: { first, _ in first })
  }

  /// A running broker's state: from the quorum when it answers, else from its ready file.
  static func brokerReadiness(_ node: LocalNode, registrations: [Int32: MetaBroker]?) -> String {
    guard let registrations else {
      return LocalBrokers.isReady(node) ? "ready (quorum unreachable)" : "starting"
    }
    guard let broker = registrations[Int32(node.id)] else { return "not registered" }
    if broker.fenced { return "fenced" }
    if broker.inControlledShutdown { return "shutting down" }
    return "ready"
  }

  private func renderTable(header: [String], rows: [[String]]) -> String {
    let all = [header] + rows
    var widths = [Int](repeating: 0, count: header.count)
    for row in all {
      for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
    }
    return all.map { row in
      row.enumerated().map { index, cell in
        index == row.count - 1
          ? cell : cell + String(repeating: " ", count: widths[index] - cell.count)
      }.joined(separator: "  ")
    }.joined(separator: "\n")
  }
}

/// `--node`, shared by stop and start.
struct LocalNodeOption: ParsableArguments {
  @Option(help: "Only this process, as ROLE-ID (e.g. metaserver-2); default: all.")
  var node: String?

  func selected(in cluster: LocalCluster) throws -> [LocalNode] {
    guard let node else { return cluster.allNodes }
    return [try cluster.node(named: node)]
  }
}

struct LocalStopCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stop",
    abstract: "Stop processes gracefully (SIGTERM; SIGKILL after the grace period).")

  @OptionGroup var directory: LocalDirectoryOption
  @OptionGroup var nodeOption: LocalNodeOption

  @Option(help: "How long a process may take to stop before SIGKILL, in ms.")
  var gracePeriodMs: Int = 15_000

  func run() async throws {
    try await runLocal {
      let cluster = try LocalCluster.load(from: directory.url)
      let selected = try nodeOption.selected(in: cluster)
      // Brokers first: their controlled shutdown needs the metaservers.
      let ordered =
        selected.filter { $0.role == "broker" } + selected.filter { $0.role != "broker" }
      for node in ordered {
        guard LocalProcesses.isRunning(node) else {
          writeOutput("\(node.name) is not running")
          continue
        }
        let graceful = await LocalProcesses.stop(node, gracePeriodMs: gracePeriodMs)
        writeOutput(
          "stopped \(node.name) (pid \(node.pid))"
            + (graceful ? "" : ": killed after \(gracePeriodMs) ms"))
      }
    }
  }
}

struct LocalStartCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "start",
    abstract: "Start stopped processes again with their data and wait until they are ready.")

  @OptionGroup var directory: LocalDirectoryOption
  @OptionGroup var nodeOption: LocalNodeOption

  @Option(help: "How long to wait for the started metaservers' /readyz and brokers, in ms.")
  var readyTimeoutMs: Int = 30_000

  @Flag(help: "Return once started, without waiting for readiness.")
  var noWait = false

  func run() async throws {
    try await runLocal {
      let root = directory.url
      var cluster = try LocalCluster.load(from: root)
      let selected = try nodeOption.selected(in: cluster)
      // Metaservers first: brokers register with them.
      for role in ["metaserver", "broker"] {
        var started: [LocalNode] = []
        for node in selected where node.role == role {
          guard !LocalProcesses.isRunning(node) else {
            writeOutput("\(node.name) already runs (pid \(node.pid))")
            continue
          }
          let restarted = try LocalStarter.startAgain(node, in: &cluster, root: root)
          started.append(restarted)
          writeOutput("started \(restarted.name) (pid \(restarted.pid))")
        }
        if !noWait {
          if role == "broker" {
            try await LocalBrokers.waitUntilReady(started, timeoutMs: readyTimeoutMs)
          } else {
            try await LocalStarter.waitUntilReady(started, timeoutMs: readyTimeoutMs)
          }
        }
      }
    }
  }
}

struct LocalDownCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "down",
    abstract:
      "Stop every process of the local cluster (brokers first); with --purge also delete its files."
  )

  @OptionGroup var directory: LocalDirectoryOption

  @Flag(help: "Also delete cluster.json and every node's data and logs.")
  var purge = false

  @Option(help: "How long processes may take to stop before SIGKILL, in ms.")
  var gracePeriodMs: Int = 5_000

  func run() async throws {
    try await runLocal {
      let root = directory.url
      let cluster = try LocalCluster.load(from: root)
      let running = cluster.allNodes.filter(LocalProcesses.isRunning)
      // Brokers first, all at once: their controlled shutdown needs the quorum (which
      // answers at once), so they exit quickly instead of waiting out the grace period.
      for group in [cluster.brokers, cluster.metaservers] {
        let stopping = group.filter(LocalProcesses.isRunning)
        for node in stopping {
          kill(node.pid, SIGTERM)
        }
        let deadline = ContinuousClock.now + .milliseconds(gracePeriodMs)
        while ContinuousClock.now < deadline
          && stopping.contains(where: LocalProcesses.isRunning)
        {
          try await Task.sleep(for: .milliseconds(20))
        }
        for node in stopping where LocalProcesses.isRunning(node) {
          await LocalProcesses.stop(node, gracePeriodMs: 0)
        }
      }
      writeOutput("stopped \(running.count) of \(cluster.allNodes.count) processes")
      guard purge else { return }
      for node in cluster.allNodes {
        let folder = URL(fileURLWithPath: node.logFile).deletingLastPathComponent()
        try? FileManager.default.removeItem(at: folder)
      }
      try? FileManager.default.removeItem(at: LocalCluster.path(in: root))
      if let remaining = try? FileManager.default.contentsOfDirectory(atPath: root.path),
        remaining.isEmpty
      {
        try? FileManager.default.removeItem(at: root)
      }
      writeOutput("removed the cluster's files in \(root.path)")
    }
  }
}

struct LocalEnvCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "env",
    abstract: "Print shell exports for the local cluster: eval \"$(sbctl local env --dir D)\".",
    discussion: """
      Prints `export SB_METASERVERS=host:port,...`, plus SB_BROKERS when the cluster has \
      brokers.
      """)

  @OptionGroup var directory: LocalDirectoryOption

  func run() async throws {
    try await runLocal {
      let cluster = try LocalCluster.load(from: directory.url)
      var line = "export SB_METASERVERS=" + cluster.metaserverAPIList
      if !cluster.brokers.isEmpty {
        line += " SB_BROKERS=" + cluster.brokerList
      }
      writeOutput(line)
    }
  }
}
