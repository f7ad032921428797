import Foundation
import StreamBusSpawn

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// How a child process ended.
public typealias ProcessExit = ChildExit

/// One child process started by the harness: stdin/stdout/stderr are files, so nothing
/// can deadlock on a full pipe, and the stderr file can be printed when a test fails.
///
/// The child is started with `posix_spawn` and reaped by its pid (``ChildProcess``), never
/// through Foundation's `Process`, whose exit detection can miss a child for ever. Until the
/// harness reaps it the pid cannot be reused, so a signal always reaches this child.
public final class ManagedProcess: @unchecked Sendable {
  public let name: String
  public let executable: URL
  public let arguments: [String]
  public let stdoutPath: URL
  public let stderrPath: URL
  public let processIdentifier: Int32
  // The reaped exit; reaping and signalling go through `lock` so a signal never reaches a
  // pid that was already reaped (and possibly reused).
  private let lock = NSLock()
  private var reapedExit: ProcessExit?

  init(
    name: String, executable: URL, arguments: [String], stdinPath: URL?, stdoutPath: URL,
    stderrPath: URL, environment: [String: String]? = nil
  ) throws {
    self.name = name
    self.executable = executable
    self.arguments = arguments
    self.stdoutPath = stdoutPath
    self.stderrPath = stderrPath
    let fullEnvironment = ProcessInfo.processInfo.environment.merging(environment ?? [:]) { $1 }
    do {
      processIdentifier = try ChildProcess.spawn(
        executable: executable.path, arguments: arguments,
        streams: ChildStreams(
          stdinPath: stdinPath?.path, stdoutPath: stdoutPath.path, stderrPath: stderrPath.path,
          append: false),
        environment: fullEnvironment)
    } catch {
      throw HarnessError("cannot start \(executable.path): \(error)")
    }
  }

  /// The exit status once the process ended, nil while it runs.
  public var exit: ProcessExit? {
    lock.withLock { reapLocked() }
  }

  public var isRunning: Bool { exit == nil }

  private func reapLocked() -> ProcessExit? {
    if let reapedExit { return reapedExit }
    do {
      reapedExit = try ChildProcess.reapIfExited(processIdentifier)
    } catch {
      // Only possible if something else reaped our child; it is gone either way.
      reapedExit = .exited(code: -1)
    }
    return reapedExit
  }

  /// Sends a signal (SIGTERM for a graceful stop, SIGKILL for a crash).
  public func signal(_ signal: Int32) {
    lock.withLock {
      guard reapLocked() == nil else { return }
      _ = kill(processIdentifier, signal)
    }
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

  /// Kills the process with SIGKILL and reaps it; safe to call more than once. Gives up
  /// (loudly) after 30 s, which only a process stuck in the kernel can outlast, rather
  /// than hang the test run.
  public func killAndReap() {
    signal(SIGKILL)
    let deadline = ContinuousClock.now + .seconds(30)
    while exit == nil {
      guard ContinuousClock.now < deadline else {
        let message =
          "ManagedProcess: \(name) (pid \(processIdentifier)) not reaped 30 s after SIGKILL\n"
        FileHandle.standardError.write(Data(message.utf8))
        return
      }
      usleep(2_000)
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
