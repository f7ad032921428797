// NetworkLab: a private network of Linux network namespaces for one chaos test.
//
// Layout. One "hub" namespace holds a bridge; every node (a metaserver, a broker, the client)
// gets its own namespace joined to the bridge by a veth pair, with one address
// 10.A.B.h/24 on `eth0` and no default route, so lab traffic never leaves the lab and
// nothing in the host namespace sees it (the host's iptables and bridge-netfilter never
// apply). The host gets nothing but the named namespaces, all called `sbc<pid>x<hex>-...`,
// and (only when asked) tmpfs mounts under `/tmp/sbc<pid>x<hex>/`. Needs root, `ip`,
// `iptables` (nft backend is fine) and `tc`; `NetworkLab.isAvailable` says whether they work
// here and `NetworkLab.unavailableReason` why not.
//
// Use:
//
//     @Test(.enabled(if: NetworkLab.isAvailable, "needs root + ip netns")) func x() async throws {
//       try await LabCluster.withCluster("x") { cluster in      // 3 metaservers + 3 brokers
//         try await cluster.createTopic("t", partitions: 3)
//         let workload = try cluster.startWorkload(LabWorkloadOptions(topic: "t"))
//         let leader = try await cluster.partitionInfo("t", 0).leader
//         let fault = try cluster.lab.partition(
//           [cluster.brokerNode(leader)], from: cluster.serverNodes)  // both ways, DROP
//         ...
//         try cluster.lab.heal(fault)                              // or healAll()
//         let report = try await workload.finish()                 // SIGTERM + JSON report
//         #expect(report.verdict == "PASS")
//       }
//     }
//
// (StreamBusChaosTests has the trait `.requiresNetworkLab`: skipped with the reason, printed.)
//
// Low level: `NetworkLab.withLab(name) { lab in let node = try lab.addNode("a") ... }`;
// `lab.start(in:executableNamed:arguments:label:)` runs a built executable inside a node
// (through `ip netns exec`, which execs in place: the pid is the real process's, so
// SIGSTOP/SIGKILL reach it); `lab.run(in:...)` runs one to completion;
// `lab.canConnect(from:host:port:)` and `lab.httpGet(from:address:path:)` probe from inside a
// node without a process. Faults (NetworkLabFaults.swift): `partition(_:from:)`,
// `oneWay(_:dropIncomingFrom:)`, `loss(_:percent:peers:)`, `reset(_:peers:)`,
// `rateLimit(_:kbit:)`, each returning a `LabFault`; `heal(_ fault)`, `heal(node:)`,
// `healAll()`. Processes (LabCluster): `kill`, `pause`, `resume`, `restart`. Disk:
// `mountTmpfs(named:sizeMiB:)` gives a small directory that fills up.
//
// Cleanup: `withLab` / `LabCluster.withCluster` shut the lab down when the body returns or
// throws (processes killed, tmpfs unmounted, namespaces deleted, temp directory removed);
// `shutdown()` is idempotent and also runs from deinit. Creating a lab first sweeps what a
// crashed earlier run left: `sbc*` namespaces and mounts whose owning pid is gone.

import Foundation
import StreamBusSpawn
import StreamBusTransport

#if canImport(Glibc)
  import Glibc
#endif

/// One node of a lab: its namespace and its address inside the lab.
public struct LabNode: Sendable, Hashable, CustomStringConvertible {
  /// The name given to `addNode` ("broker-1").
  public let name: String
  /// The network namespace (`sbc<token>-broker-1`).
  public let namespace: String
  /// The IPv4 address of its `eth0`, reachable only from other nodes of the same lab.
  public let address: String
  /// The hub-side veth interface of this node (for shaping traffic towards it).
  let hubInterface: String

  public var description: String { "\(name) (\(address))" }

  /// `address:port`.
  public func endpoint(_ port: Int) -> String { "\(address):\(port)" }
}

public final class NetworkLab: @unchecked Sendable {
  /// Every namespace, directory and mount of every lab starts with this.
  public static let namePrefix = "sbc"

  /// Unique per lab: `sbc<pid>x<hex>`. The pid lets the sweeper tell a crashed run's leftovers
  /// from a lab another test process is using right now.
  public let prefix: String
  /// The lab's /24, e.g. "10.83.17" (nodes are .11, .12, ...).
  public let subnet: String
  public let hubNamespace: String
  /// Processes and their logs (under `directory`).
  public let harness: ProcessHarness
  /// `/tmp/sbc<pid>x<hex>`: the harness root and tmpfs mount points live under it.
  public let directory: URL
  public let name: String

  let lock = NSLock()
  private var nodesByName: [String: LabNode] = [:]
  private var nodeOrder: [String] = []
  private var mounts: [URL] = []
  private var namespaces: [String] = []
  var faults: [Int: FaultRecord] = [:]
  let faultCounter = LabCounter()
  private var isShutDown = false
  /// Long-running processes (servers), whose logs are printed when a test fails.
  private var servers: [ManagedProcess] = []

  static let bridgeName = "br0"
  static let nodeInterface = "eth0"
  private static let nodeNameCharacters = Set("abcdefghijklmnopqrstuvwxyz0123456789-")

  // MARK: - Availability

  /// Whether labs can be built here (root, `ip`, `iptables`, `tc`, `ip netns add` and
  /// iptables inside a namespace work). Checked once per process.
  public static var isAvailable: Bool { availability == nil }

  /// Why labs cannot be built here; nil when they can.
  public static var unavailableReason: String? { availability }

  private static let availability: String? = checkAvailability()

  private static func checkAvailability() -> String? {
    guard geteuid() == 0 else {
      return "not running as root (euid \(geteuid())); network namespaces need root"
    }
    for tool in ["ip", "iptables", "iptables-restore", "tc"] where LabCommand.toolPath(tool) == nil
    {
      return "\(tool) is not installed (apt-get install iproute2 iptables)"
    }
    let probe = "\(namePrefix)\(getpid())xprobe\(UInt16.random(in: 0...UInt16.max))"
    do {
      try LabCommand.check(["ip", "netns", "add", probe])
      defer { _ = try? LabCommand.run(["ip", "netns", "del", probe]) }
      try LabCommand.check(try LabCommand.inNamespace(probe, ["iptables", "-w", "5", "-S"]))
      try LabCommand.check(try LabCommand.inNamespace(probe, ["tc", "qdisc", "show"]))
    } catch {
      return "network namespaces do not work here: \(error)"
    }
    return nil
  }

  // MARK: - Lifecycle

  /// Sweeps stale labs, then builds the hub namespace with its bridge. Throws (after cleaning
  /// up what it made) when the lab cannot be built; check `isAvailable` first to skip.
  public init(name: String, configuration: BuildConfiguration? = nil) throws {
    if let reason = Self.unavailableReason {
      throw HarnessError("NetworkLab unavailable: \(reason)")
    }
    Self.sweepStaleLabs()
    self.name = name
    let token = "\(getpid())x\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
    prefix = Self.namePrefix + token
    subnet = "10.\(Int.random(in: 1...254)).\(Int.random(in: 0...255))"
    hubNamespace = prefix + "-hub"
    directory = URL(fileURLWithPath: "/tmp/\(prefix)", isDirectory: true)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    do {
      harness = try ProcessHarness(
        name: name, configuration: configuration, parentDirectory: directory)
    } catch {
      try? FileManager.default.removeItem(at: directory)
      throw error
    }
    do {
      try addNamespace(hubNamespace)
      let ip = try LabCommand.requireTool("ip")
      try LabCommand.check([ip, "-n", hubNamespace, "link", "set", "lo", "up"])
      try LabCommand.check([
        ip, "-n", hubNamespace, "link", "add", Self.bridgeName, "type", "bridge",
      ])
      try LabCommand.check([ip, "-n", hubNamespace, "link", "set", Self.bridgeName, "up"])
    } catch {
      shutdown()
      throw error
    }
  }

  deinit {
    shutdown()
  }

  /// Runs `body` with a fresh lab and shuts it down after, also when `body` throws (then it
  /// first prints the servers' stderr tails; `STREAMBUS_TEST_LOGS=1` prints them always).
  public static func withLab<Result>(
    _ name: String, configuration: BuildConfiguration? = nil,
    body: (NetworkLab) async throws -> Result
  ) async throws -> Result {
    let lab = try NetworkLab(name: name, configuration: configuration)
    defer { lab.shutdown() }
    do {
      let result = try await body(lab)
      if ProcessInfo.processInfo.environment["STREAMBUS_TEST_LOGS"] == "1" {
        lab.printServerLogs(reason: "STREAMBUS_TEST_LOGS=1")
      }
      return result
    } catch {
      lab.printServerLogs(reason: "failed: \(error)")
      throw error
    }
  }

  /// Kills every process, unmounts tmpfs mounts, deletes the namespaces and the lab
  /// directory. Idempotent; never throws (failures are printed).
  public func shutdown() {
    let (namespacesToDelete, mountsToRemove): ([String], [URL]) = lock.withLock {
      if isShutDown { return ([], []) }
      isShutDown = true
      return (namespaces, mounts)
    }
    harness.shutdown()
    for mount in mountsToRemove.reversed() {
      Self.unmount(mount.path)
    }
    // Node namespaces first; the hub last (deleting it destroys the bridge and the veths).
    for namespace in namespacesToDelete.reversed() {
      Self.deleteNamespace(namespace)
    }
    try? FileManager.default.removeItem(at: directory)
    lock.withLock {
      namespaces = []
      mounts = []
    }
  }

  // MARK: - Nodes

  /// Adds a node: a namespace joined to the hub's bridge, with the next free address.
  /// Names are lower-case letters, digits and '-', at most 24 characters, unique per lab.
  @discardableResult
  public func addNode(_ nodeName: String) throws -> LabNode {
    precondition(
      !nodeName.isEmpty && nodeName.count <= 24
        && nodeName.allSatisfy { Self.nodeNameCharacters.contains($0) },
      "bad lab node name '\(nodeName)'")
    let (index, node): (Int, LabNode) = try lock.withLock {
      guard !isShutDown else { throw HarnessError("lab \(prefix) is shut down") }
      precondition(nodesByName[nodeName] == nil, "lab node \(nodeName) exists")
      let index = nodeOrder.count + 1
      precondition(index <= 200, "too many lab nodes")
      let node = LabNode(
        name: nodeName, namespace: "\(prefix)-\(nodeName)",
        address: "\(subnet).\(10 + index)", hubInterface: "v\(index)")
      nodesByName[nodeName] = node
      nodeOrder.append(nodeName)
      return (index, node)
    }
    precondition(index > 0)
    let ip = try LabCommand.requireTool("ip")
    try addNamespace(node.namespace)
    try LabCommand.check([ip, "-n", node.namespace, "link", "set", "lo", "up"])
    // Both ends are created directly inside their namespaces: nothing appears in the host.
    try LabCommand.check([
      ip, "link", "add", node.hubInterface, "netns", hubNamespace, "type", "veth", "peer",
      "name", Self.nodeInterface, "netns", node.namespace,
    ])
    try LabCommand.check([
      ip, "-n", hubNamespace, "link", "set", node.hubInterface, "master", Self.bridgeName, "up",
    ])
    try LabCommand.check([
      ip, "-n", node.namespace, "addr", "add", "\(node.address)/24", "dev", Self.nodeInterface,
    ])
    try LabCommand.check([ip, "-n", node.namespace, "link", "set", Self.nodeInterface, "up"])
    return node
  }

  public func node(_ nodeName: String) -> LabNode {
    lock.withLock {
      guard let node = nodesByName[nodeName] else { preconditionFailure("no lab node \(nodeName)") }
      return node
    }
  }

  /// All nodes in the order they were added.
  public var nodes: [LabNode] {
    lock.withLock { nodeOrder.compactMap { nodesByName[$0] } }
  }

  private func addNamespace(_ namespace: String) throws {
    try LabCommand.check(["ip", "netns", "add", namespace])
    lock.withLock { namespaces.append(namespace) }
  }

  // MARK: - Processes

  /// Starts a built executable (`databroker`, `metaserver`, `sbctl`) inside `node`. Its
  /// stdout/stderr go to files under the lab; it is killed at shutdown.
  /// - Parameter isServer: its stderr tail is printed when the test fails.
  public func start(
    in node: LabNode, executableNamed executableName: String, arguments: [String],
    label: String? = nil, stdin: URL? = nil, environment: [String: String]? = nil,
    isServer: Bool = true
  ) throws -> ManagedProcess {
    let executable = try ExecutableLocator.executable(
      named: executableName, preferring: harness.configuration)
    let process = try harness.start(
      executable: executable, arguments: arguments,
      wrapper: [try LabCommand.requireTool("ip"), "netns", "exec", node.namespace],
      stdin: stdin, label: label ?? "\(executableName)@\(node.name)", environment: environment)
    if isServer {
      lock.withLock { servers.append(process) }
    }
    return process
  }

  /// Runs a built executable inside `node` to completion; kills it after `timeoutMs`.
  public func run(
    in node: LabNode, executableNamed executableName: String, arguments: [String],
    stdin: URL? = nil, timeoutMs: Int = 30_000, environment: [String: String]? = nil
  ) async throws -> ProcessResult {
    let process = try start(
      in: node, executableNamed: executableName, arguments: arguments, stdin: stdin,
      environment: environment, isServer: false)
    let exit: ProcessExit
    do {
      exit = try await process.waitForExit(timeoutMs: timeoutMs)
    } catch {
      process.killAndReap()
      throw HarnessError(
        "\(executableName) \(arguments.joined(separator: " ")) in \(node.name) did not finish "
          + "within \(timeoutMs) ms; stderr:\n\(process.stderrTail(lines: 20))")
    }
    return ProcessResult(process: process, exit: exit)
  }

  /// Prints each server process's command line and stderr tail to stderr.
  public func printServerLogs(reason: String, lines: Int = 40) {
    let snapshot = lock.withLock { servers }
    var text = "==== NetworkLab \(prefix) (\(name)): \(reason)\n"
    for process in snapshot {
      let state = process.exit.map(\.description) ?? "running"
      text += "---- \(process.name) [\(state)]: "
      text +=
        process.arguments.suffix(from: min(3, process.arguments.count))
        .joined(separator: " ") + "\n"
      text += process.stderrTail(lines: lines) + "\n"
    }
    FileHandle.standardError.write(Data(text.utf8))
  }

  // MARK: - Probes from inside a node (no process needed)

  /// Runs `body` on a thread inside `node`'s network namespace (sockets it opens are the
  /// node's). Keep it short and blocking-with-timeouts.
  public func inNamespace<Result: Sendable>(
    of node: LabNode, _ body: @escaping @Sendable () -> Result
  ) async throws -> Result {
    try await NamespaceThread.run(inNamespace: node.namespace, body)
  }

  /// Whether a TCP connection from `node` to `host:port` is established within `timeoutMs`
  /// (a refused connection means the path works but nothing listens: false too).
  public func canConnect(
    from node: LabNode, host: String, port: Int, timeoutMs: Int = 1_000
  ) async throws -> Bool {
    try await inNamespace(of: node) { labTCPConnect(host: host, port: port, timeoutMs: timeoutMs) }
  }

  /// An HTTP request from inside `node`; nil when there is no answer in time.
  public func httpGet(
    from node: LabNode, address: String, path: String, timeoutMs: Int = 1_000
  ) async throws -> BlockingHTTP.Response? {
    try await inNamespace(of: node) {
      BlockingHTTP.request("GET", address: address, path: path, timeoutMs: timeoutMs)
    }
  }

  // MARK: - System tools

  /// Runs a system tool (`ip`, `iptables`, `tc`, `df`, ...; a name or an absolute path) in
  /// the host namespace and returns its stdout; throws with its stderr when it fails.
  @discardableResult
  public static func runTool(_ arguments: [String], timeoutMs: Int = 15_000) throws -> String {
    try LabCommand.check(arguments, timeoutMs: timeoutMs)
  }

  /// Runs a system tool inside `node`'s network namespace (`ip netns exec`).
  @discardableResult
  public func runTool(_ arguments: [String], in node: LabNode, timeoutMs: Int = 15_000) throws
    -> String
  {
    try LabCommand.check(LabCommand.inNamespace(node.namespace, arguments), timeoutMs: timeoutMs)
  }

  // MARK: - Disk

  /// A tmpfs of `sizeMiB` MiB mounted at `<lab directory>/mounts/<name>` (e.g. a broker's data
  /// directory that fills up). Unmounted at shutdown.
  public func mountTmpfs(named mountName: String, sizeMiB: Int) throws -> URL {
    precondition(sizeMiB > 0, "tmpfs size must be positive")
    let mountPoint = directory.appendingPathComponent("mounts/\(mountName)", isDirectory: true)
    try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
    let result = mount("tmpfs", mountPoint.path, "tmpfs", 0, "size=\(sizeMiB)m,mode=0755")
    guard result == 0 else {
      throw HarnessError(
        "mount tmpfs at \(mountPoint.path) failed: \(String(cString: strerror(errno)))")
    }
    lock.withLock { mounts.append(mountPoint) }
    return mountPoint
  }

  // MARK: - Sweeping leftovers of crashed runs

  private static let sweepLock = NSLock()

  /// Deletes `sbc*` namespaces, mounts and lab directories whose owning process is gone
  /// (a test run that crashed or was killed before its cleanup ran).
  public static func sweepStaleLabs() {
    sweepLock.withLock {
      let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
      for namespace in entries where isStale(namespace) {
        FileHandle.standardError.write(
          Data("NetworkLab: removing stale namespace \(namespace)\n".utf8))
        if let pids = try? LabCommand.check(["ip", "netns", "pids", namespace]) {
          for pid in pids.split(whereSeparator: \.isWhitespace).compactMap({ Int32($0) }) {
            kill(pid, SIGKILL)
          }
        }
        deleteNamespace(namespace)
      }
      let mountsText = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
      let mountPoints = mountsText.split(separator: "\n").compactMap { line -> String? in
        let fields = line.split(separator: " ")
        return fields.count > 1 ? String(fields[1]) : nil
      }
      for mountPoint in mountPoints where mountPoint.hasPrefix("/tmp/\(namePrefix)") {
        let component = mountPoint.dropFirst("/tmp/".count).prefix { $0 != "/" }
        if isStale(String(component)) {
          FileHandle.standardError.write(
            Data("NetworkLab: unmounting stale \(mountPoint)\n".utf8))
          unmount(mountPoint)
        }
      }
      let temporary = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
      for entry in temporary where isStale(entry) || isStaleCommandOutput(entry) {
        try? FileManager.default.removeItem(atPath: "/tmp/\(entry)")
      }
    }
  }

  /// `sbc<pid>x...` whose pid is not a running process.
  public static func isStale(_ name: String) -> Bool {
    guard name.hasPrefix(namePrefix) else { return false }
    let digits = name.dropFirst(namePrefix.count).prefix { $0.isNumber }
    guard let pid = Int32(digits), pid > 0,
      name.dropFirst(namePrefix.count + digits.count).first == "x"
    else { return false }
    if pid == getpid() { return false }
    return kill(pid, 0) != 0 && errno == ESRCH
  }

  /// `sbc-command-<pid>-N.out|err` (a tool's captured output) whose pid is not running.
  static func isStaleCommandOutput(_ name: String) -> Bool {
    let prefix = "\(namePrefix)-command-"
    guard name.hasPrefix(prefix) else { return false }
    let digits = name.dropFirst(prefix.count).prefix { $0.isNumber }
    guard let pid = Int32(digits), pid > 0, pid != getpid() else { return false }
    return kill(pid, 0) != 0 && errno == ESRCH
  }

  static func deleteNamespace(_ namespace: String) {
    let output = try? LabCommand.run(["ip", "netns", "del", namespace])
    if let output, !output.succeeded,
      FileManager.default.fileExists(atPath: "/run/netns/\(namespace)")
    {
      FileHandle.standardError.write(
        Data("NetworkLab: ip netns del \(namespace) failed: \(output.stderr)\n".utf8))
    }
  }

  static func unmount(_ path: String) {
    if umount2(path, Int32(MNT_DETACH)) != 0 && errno != EINVAL && errno != ENOENT {
      FileHandle.standardError.write(
        Data("NetworkLab: umount \(path) failed: \(String(cString: strerror(errno)))\n".utf8))
    }
  }
}
