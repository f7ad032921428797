import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// How a child process ended.
public enum ProcessExit: Equatable, Sendable, CustomStringConvertible {
  case exited(code: Int32)
  case signaled(signal: Int32)

  public var description: String {
    switch self {
    case .exited(let code): return "exit code \(code)"
    case .signaled(let signal): return "killed by signal \(signal)"
    }
  }
}

/// One child process started by the harness: stdin/stdout/stderr are files, so nothing
/// can deadlock on a full pipe, and the stderr file can be printed when a test fails.
public final class ManagedProcess: @unchecked Sendable {
  public let name: String
  public let executable: URL
  public let arguments: [String]
  public let stdoutPath: URL
  public let stderrPath: URL
  // Foundation's Process is not Sendable; every access goes through `lock`.
  private let process: Process
  private let lock = NSLock()

  init(
    name: String, executable: URL, arguments: [String], stdinPath: URL?, stdoutPath: URL,
    stderrPath: URL, environment: [String: String]? = nil
  ) throws {
    self.name = name
    self.executable = executable
    self.arguments = arguments
    self.stdoutPath = stdoutPath
    self.stderrPath = stderrPath
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let environment {
      process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    for path in [stdoutPath, stderrPath] {
      guard FileManager.default.createFile(atPath: path.path, contents: nil) else {
        throw HarnessError("cannot create \(path.path)")
      }
    }
    let stdout = try FileHandle(forWritingTo: stdoutPath)
    let stderr = try FileHandle(forWritingTo: stderrPath)
    let stdin =
      try stdinPath.map { try FileHandle(forReadingFrom: $0) }
      ?? FileHandle(forReadingAtPath: "/dev/null")
    // The child has its own copies once started; the parent's are closed either way so a
    // long benchmark or test run does not accumulate descriptors.
    defer {
      try? stdout.close()
      try? stderr.close()
      try? stdin?.close()
    }
    process.standardOutput = stdout
    process.standardError = stderr
    process.standardInput = stdin
    self.process = process
    do {
      try process.run()
    } catch {
      throw HarnessError("cannot start \(executable.path): \(error)")
    }
  }

  public var processIdentifier: Int32 { lock.withLock { process.processIdentifier } }

  public var isRunning: Bool { lock.withLock { process.isRunning } }

  /// The exit status once the process ended, nil while it runs.
  public var exit: ProcessExit? {
    lock.withLock {
      guard !process.isRunning else { return nil }
      switch process.terminationReason {
      case .exit: return .exited(code: process.terminationStatus)
      case .uncaughtSignal: return .signaled(signal: process.terminationStatus)
      @unknown default: return .exited(code: process.terminationStatus)
      }
    }
  }

  /// Sends a signal (SIGTERM for a graceful stop, SIGKILL for a crash).
  public func signal(_ signal: Int32) {
    let pid = processIdentifier
    guard pid > 0, isRunning else { return }
    _ = kill(pid, signal)
  }

  /// Waits until the process ends; throws when it is still running after the timeout.
  @discardableResult
  public func waitForExit(timeoutMs: Int) async throws -> ProcessExit {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    while ContinuousClock.now < deadline {
      if let exit { return exit }
      try await Task.sleep(for: .milliseconds(5))
    }
    if let exit { return exit }
    throw HarnessError("\(name) (pid \(processIdentifier)) still running after \(timeoutMs) ms")
  }

  /// Kills the process with SIGKILL and reaps it; safe to call more than once.
  public func killAndReap() {
    signal(SIGKILL)
    lock.withLock {
      if process.processIdentifier > 0 { process.waitUntilExit() }
    }
  }

  public func stderrText() -> String {
    (try? String(contentsOf: stderrPath, encoding: .utf8)) ?? ""
  }

  public func stdoutData() -> Data {
    (try? Data(contentsOf: stdoutPath)) ?? Data()
  }

  /// The last lines of stderr, for failure reports.
  public func stderrTail(lines: Int = 60) -> String {
    let all = stderrText().split(separator: "\n", omittingEmptySubsequences: false)
    return all.suffix(lines).joined(separator: "\n")
  }
}
