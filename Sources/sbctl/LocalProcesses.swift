import Foundation
import StreamBusSpawn

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Starting, checking and stopping the processes of a local cluster.
///
/// Processes are spawned in a session of their own (setsid), with stdin from /dev/null and
/// stdout and stderr appended to their log file, so they outlive `sbctl` and a closed
/// terminal. `sbctl` never waits for them; the init process reaps them once they exit.
enum LocalProcesses {
  /// Starts `executable` with `arguments` as a daemon; returns its pid.
  static func spawnDaemon(executable: String, arguments: [String], logFile: String) throws
    -> Int32
  {
    do {
      return try ChildProcess.spawn(
        executable: executable, arguments: arguments,
        streams: ChildStreams(stdoutPath: logFile, stderrPath: nil, append: true),
        environment: ProcessInfo.processInfo.environment, newSession: true)
    } catch {
      throw LocalClusterError("\(error)")
    }
  }

  /// Whether `node` runs: its pid is alive, not a zombie, and still the process that was
  /// started for it (command line names its data directory), so a reused pid is not
  /// mistaken for the node.
  static func isRunning(_ node: LocalNode) -> Bool {
    let pid = node.pid
    guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
    #if os(Linux)
      if let state = kernelState(pid), state == "Z" || state == "X" { return false }
      guard let commandLine = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))
      else { return false }
      let arguments = commandLine.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
      return arguments.contains(node.dataDir)
    #else
      return true
    #endif
  }

  /// Whether a running node is stopped by a signal (SIGSTOP, SIGTSTP) or a debugger: it
  /// holds its ports but answers nothing, which an operator must not mistake for running.
  static func isPaused(_ node: LocalNode) -> Bool {
    guard let state = kernelState(node.pid) else { return false }
    return state == "T" || state == "t"
  }

  /// The state letter of `/proc/PID/stat` (R, S, D, T, t, Z, X...), nil where there is none.
  private static func kernelState(_ pid: Int32) -> Character? {
    #if os(Linux)
      guard pid > 0,
        let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let closing = stat.lastIndex(of: ")")
      else { return nil }
      return stat[stat.index(after: closing)...].trimmingCharacters(in: .whitespaces).first
    #else
      return nil
    #endif
  }

  /// SIGTERM, then SIGKILL when the node is still running after `gracePeriodMs`.
  /// Returns true when the graceful stop sufficed.
  @discardableResult
  static func stop(_ node: LocalNode, gracePeriodMs: Int) async -> Bool {
    guard isRunning(node) else { return true }
    kill(node.pid, SIGTERM)
    let deadline = ContinuousClock.now + .milliseconds(gracePeriodMs)
    while ContinuousClock.now < deadline {
      if !isRunning(node) { return true }
      try? await Task.sleep(for: .milliseconds(20))
    }
    kill(node.pid, SIGKILL)
    let killDeadline = ContinuousClock.now + .seconds(5)
    while isRunning(node) && ContinuousClock.now < killDeadline {
      try? await Task.sleep(for: .milliseconds(10))
    }
    return false
  }

  /// `count` distinct TCP ports free on 127.0.0.1 right now, chosen at random outside the
  /// kernel's ephemeral range: a port in that range can be taken by any outgoing connection
  /// while its node is stopped, and the node could not listen on it again. All candidates
  /// stay bound until every port is picked, so the list has no duplicates; another process
  /// may still take a port before the node binds it, which the node then reports in its log.
  static func freePorts(_ count: Int) throws -> [Int] {
    let candidates = listeningPortRange()
    var descriptors: [Int32] = []
    defer { for descriptor in descriptors { close(descriptor) } }
    var ports: [Int] = []
    var attempts = 0
    while ports.count < count {
      attempts += 1
      guard attempts <= 10_000 else {
        throw LocalClusterError(
          "found only \(ports.count) of \(count) free ports in \(candidates); pass --base-port")
      }
      let port = Int.random(in: candidates)
      if ports.contains(port) { continue }
      let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      guard descriptor >= 0 else {
        throw LocalClusterError("cannot create a socket to find a free port: errno \(errno)")
      }
      var address = sockaddr_in()
      address.sin_family = sa_family_t(AF_INET)
      address.sin_port = UInt16(port).bigEndian
      address.sin_addr.s_addr = inet_addr("127.0.0.1")
      let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
      }
      if bound == 0 {
        descriptors.append(descriptor)
        ports.append(port)
      } else {
        close(descriptor)
      }
    }
    return ports
  }

  /// Ports to pick listeners from: below the ephemeral range (from 10000), or above it
  /// when that leaves more room.
  static func listeningPortRange() -> ClosedRange<Int> {
    var ephemeral = 32_768...60_999
    if let text = try? String(
      contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
    {
      let bounds = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        .compactMap { Int($0) }
      if bounds.count == 2, bounds[0] <= bounds[1] { ephemeral = bounds[0]...bounds[1] }
    }
    let below = 10_000...max(10_000, ephemeral.lowerBound - 1)
    let above = min(65_535, ephemeral.upperBound + 1)...65_535
    return below.count >= above.count ? below : above
  }

  /// The path of a StreamBus executable: `$STREAMBUS_BIN_DIR`, then next to this `sbctl`,
  /// then `$PATH`.
  static func executable(named name: String) throws -> String {
    var directories: [String] = []
    if let override = ProcessInfo.processInfo.environment["STREAMBUS_BIN_DIR"],
      !override.isEmpty
    {
      directories.append(override)
    }
    #if os(Linux)
      if let running = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
      {
        directories.append(URL(fileURLWithPath: running).deletingLastPathComponent().path)
      }
    #endif
    if let executable = Bundle.main.executablePath {
      directories.append(URL(fileURLWithPath: executable).deletingLastPathComponent().path)
    }
    directories += (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(
      String.init)
    for directory in directories {
      let candidate = URL(fileURLWithPath: directory).appendingPathComponent(name).path
      if FileManager.default.isExecutableFile(atPath: candidate) {
        return candidate
      }
    }
    throw LocalClusterError(
      "cannot find the \(name) executable next to sbctl or on PATH; build it (swift build "
        + "--product \(name)) or set STREAMBUS_BIN_DIR")
  }

  /// The last `lines` lines of a log file, indented, for error messages.
  static func logTail(_ path: String, lines: Int = 15) -> String {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8), !text.isEmpty else {
      return "  (log is empty)"
    }
    return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines)
      .map { "  " + $0 }.joined(separator: "\n")
  }
}
