import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Starts real StreamBus processes for one test (or one benchmark run) and guarantees that
/// every process it started is killed and every temp directory removed, whatever happens.
///
/// Use ``withHarness(_:configuration:body:)``: it prints every process's stderr tail when the
/// body throws (set `STREAMBUS_TEST_LOGS=1` to print them always), then cleans up.
public final class ProcessHarness: @unchecked Sendable {
  public let rootDirectory: URL
  public let configuration: BuildConfiguration?
  // All mutable state is behind `lock`: tests may start processes from several tasks.
  private let lock = NSLock()
  private var processes: [ManagedProcess] = []
  private var processCounter = 0
  private var isShutDown = false

  /// How long a harness may live before its watchdog kills its processes (900 s), unless
  /// `STREAMBUS_HARNESS_WATCHDOG_S` says otherwise (0 turns it off) or a long variant
  /// (`REPLICATION_LONG=1`, `CHAOS_LONG=1`) runs.
  public static var defaultWatchdogSeconds: Int? {
    let environment = ProcessInfo.processInfo.environment
    if let text = environment["STREAMBUS_HARNESS_WATCHDOG_S"], let seconds = Int(text) {
      return seconds > 0 ? seconds : nil
    }
    if environment["REPLICATION_LONG"] == "1" || environment["CHAOS_LONG"] == "1" { return nil }
    return 900
  }

  /// How long after the watchdog fired a harness still not shut down aborts the run.
  static let watchdogAbortGraceSeconds = 120

  /// - Parameter parentDirectory: where the harness's temp directory is created (default the
  ///   system temp directory); benchmarks put it on the disk they measure.
  /// - Parameter watchdogSeconds: a test that hangs (an await nothing will ever resume)
  ///   would otherwise hold the whole test run until CI's time limit. After this many
  ///   seconds the harness prints its processes' logs and kills them, which ends most hangs
  ///   as a test failure; if the harness is still not shut down two minutes later, the
  ///   process aborts with a message naming it. nil: no watchdog (benchmarks).
  public init(
    name: String, configuration: BuildConfiguration? = nil, parentDirectory: URL? = nil,
    watchdogSeconds: Int? = ProcessHarness.defaultWatchdogSeconds
  ) throws {
    let safeName = name.map { $0.isLetter || $0.isNumber ? $0 : "-" }
    let template = (parentDirectory ?? FileManager.default.temporaryDirectory)
      .standardizedFileURL
      .appendingPathComponent("sb-\(String(safeName.prefix(40))).XXXXXX").path
    var buffer = Array(template.utf8CString)
    guard let created = mkdtemp(&buffer) else {
      throw HarnessError("mkdtemp failed for \(template): errno \(errno)")
    }
    rootDirectory = URL(fileURLWithPath: String(cString: created), isDirectory: true)
    self.configuration = configuration
    if let watchdogSeconds { armWatchdog(seconds: watchdogSeconds) }
  }

  private var hasShutDown: Bool { lock.withLock { isShutDown } }

  private func armWatchdog(seconds: Int) {
    DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(seconds)) { [weak self] in
      guard let self, !self.hasShutDown else { return }
      self.printLogs(
        reason: "watchdog: still running after \(seconds) s; killing its processes so the "
          + "test fails instead of hanging the run")
      let snapshot = self.lock.withLock { self.processes }
      for process in snapshot { process.signal(SIGKILL) }
      let grace = Self.watchdogAbortGraceSeconds
      DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(grace)) { [weak self] in
        guard let self, !self.hasShutDown else { return }
        let message =
          "ProcessHarness watchdog: \(self.rootDirectory.lastPathComponent) still not shut "
          + "down \(seconds + grace) s after it started; aborting the test run\n"
        FileHandle.standardError.write(Data(message.utf8))
        abort()
      }
    }
  }

  deinit {
    shutdown()
  }

  /// Runs `body` with a fresh harness; kills everything and removes the temp directory after.
  public static func withHarness<Result>(
    _ name: String, configuration: BuildConfiguration? = nil, parentDirectory: URL? = nil,
    watchdogSeconds: Int? = ProcessHarness.defaultWatchdogSeconds,
    body: (ProcessHarness) async throws -> Result
  ) async throws -> Result {
    let harness = try ProcessHarness(
      name: name, configuration: configuration, parentDirectory: parentDirectory,
      watchdogSeconds: watchdogSeconds)
    defer { harness.shutdown() }
    do {
      let result = try await body(harness)
      if ProcessInfo.processInfo.environment["STREAMBUS_TEST_LOGS"] == "1" {
        harness.printLogs(reason: "STREAMBUS_TEST_LOGS=1")
      }
      return result
    } catch {
      harness.printLogs(reason: "failed: \(error)")
      throw error
    }
  }

  /// A new directory under the harness root (removed at shutdown).
  public func makeDirectory(_ name: String) throws -> URL {
    let directory = rootDirectory.appendingPathComponent(name, isDirectory: true)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
  }

  /// Starts a built executable; stdout and stderr go to files under the harness root.
  public func start(
    executableNamed executableName: String, arguments: [String], stdin: URL? = nil,
    label: String? = nil, environment: [String: String]? = nil
  ) throws -> ManagedProcess {
    let executable = try ExecutableLocator.executable(
      named: executableName, preferring: configuration)
    return try start(
      executable: executable, arguments: arguments, stdin: stdin,
      label: label ?? executableName, environment: environment)
  }

  /// Starts `executable` (an absolute path), optionally through `wrapper`: a command that
  /// ends by exec-ing what follows it, e.g. `["/usr/sbin/ip", "netns", "exec", "ns1"]`. The
  /// wrapper must exec in place (not fork) so the pid, and every signal sent to it, is the
  /// real process's.
  public func start(
    executable: URL, arguments: [String], wrapper: [String] = [], stdin: URL? = nil,
    label: String, environment: [String: String]? = nil
  ) throws -> ManagedProcess {
    let index = lock.withLock {
      processCounter += 1
      return processCounter
    }
    let name = "\(label)-\(index)"
    let logs = rootDirectory.appendingPathComponent("logs", isDirectory: true)
    try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
    let spawned: URL
    let spawnedArguments: [String]
    if let program = wrapper.first {
      spawned = URL(fileURLWithPath: program)
      spawnedArguments = Array(wrapper.dropFirst()) + [executable.path] + arguments
    } else {
      spawned = executable
      spawnedArguments = arguments
    }
    let process = try ManagedProcess(
      name: name, executable: spawned, arguments: spawnedArguments, stdinPath: stdin,
      stdoutPath: logs.appendingPathComponent("\(name).stdout"),
      stderrPath: logs.appendingPathComponent("\(name).stderr"), environment: environment)
    let accepted = lock.withLock {
      if isShutDown { return false }
      processes.append(process)
      return true
    }
    if !accepted {
      process.killAndReap()
      throw HarnessError("harness already shut down; \(name) was killed")
    }
    return process
  }

  /// Runs an executable to completion (e.g. `sbctl`), killing it after `timeoutMs`.
  public func run(
    executableNamed executableName: String, arguments: [String], stdin: URL? = nil,
    timeoutMs: Int = 60_000, environment: [String: String]? = nil
  ) async throws -> ProcessResult {
    let process = try start(
      executableNamed: executableName, arguments: arguments, stdin: stdin,
      environment: environment)
    let exit: ProcessExit
    do {
      exit = try await process.waitForExit(timeoutMs: timeoutMs)
    } catch {
      process.killAndReap()
      throw HarnessError(
        "\(executableName) \(arguments.joined(separator: " ")) did not finish within "
          + "\(timeoutMs) ms; stderr:\n\(process.stderrTail())")
    }
    return ProcessResult(process: process, exit: exit)
  }

  /// Starts `databroker --standalone` and waits until it accepts connections.
  public func startBroker(
    dataDirectory: URL? = nil, listen: String = "127.0.0.1:0", extraArguments: [String] = [],
    readyTimeoutMs: Int = 30_000
  ) async throws -> BrokerProcess {
    let dataDirectory = try dataDirectory ?? makeDirectory("broker-data-\(UUID().uuidString)")
    let readyFile = rootDirectory.appendingPathComponent("ready-\(UUID().uuidString)")
    let process = try start(
      executableNamed: "databroker",
      arguments: [
        "--standalone", "--data-dir", dataDirectory.path, "--listen", listen,
        "--ready-file", readyFile.path,
      ] + extraArguments,
      label: "databroker")
    let address = try await BrokerProcess.waitUntilReady(
      process: process, readyFile: readyFile, timeoutMs: readyTimeoutMs)
    return BrokerProcess(process: process, dataDirectory: dataDirectory, address: address)
  }

  /// Prints each process's command line and stderr tail to stderr.
  public func printLogs(reason: String) {
    let snapshot = lock.withLock { processes }
    var text = "==== ProcessHarness \(rootDirectory.lastPathComponent): \(reason)\n"
    for process in snapshot {
      let state = process.exit.map(\.description) ?? "running"
      text += "---- \(process.name) [\(state)]: \(process.executable.lastPathComponent) "
      text += process.arguments.joined(separator: " ") + "\n"
      text += process.stderrTail() + "\n"
    }
    FileHandle.standardError.write(Data(text.utf8))
  }

  /// Kills every process started here and removes the temp directory. Idempotent.
  public func shutdown() {
    let snapshot: [ManagedProcess] = lock.withLock {
      if isShutDown { return [] }
      isShutDown = true
      return processes
    }
    for process in snapshot { process.killAndReap() }
    if !snapshot.isEmpty || FileManager.default.fileExists(atPath: rootDirectory.path) {
      try? FileManager.default.removeItem(at: rootDirectory)
    }
  }
}

/// The outcome of ``ProcessHarness/run(executableNamed:arguments:stdin:timeoutMs:environment:)``.
public struct ProcessResult: Sendable {
  public let process: ManagedProcess
  public let exit: ProcessExit

  public var succeeded: Bool { exit == .exited(code: 0) }
  public var stdout: Data { process.stdoutData() }
  public var stdoutText: String { String(decoding: process.stdoutData(), as: UTF8.self) }
  public var stderrText: String { process.stderrText() }

  /// Throws with the stderr tail unless the process exited with code 0.
  @discardableResult
  public func checkSuccess() throws -> ProcessResult {
    guard succeeded else {
      throw HarnessError(
        "\(process.executable.lastPathComponent) \(process.arguments.joined(separator: " ")) "
          + "ended with \(exit); stderr:\n\(process.stderrTail())")
    }
    return self
  }
}
