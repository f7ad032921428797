import Foundation
import StreamBusSpawn

#if canImport(Glibc)
  import Glibc
#endif

/// The system tools the lab drives (`ip`, `iptables`, `tc`), run to completion with
/// `posix_spawn` (never Foundation's `Process`), with a timeout and their output captured.
enum LabCommand {
  static let searchDirectories = ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"]

  /// The absolute path of a system tool, nil when it is not installed.
  static func toolPath(_ name: String) -> String? {
    var directories = searchDirectories
    if let path = ProcessInfo.processInfo.environment["PATH"] {
      directories += path.split(separator: ":").map(String.init)
    }
    for directory in directories {
      let candidate = directory + "/" + name
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
  }

  static func requireTool(_ name: String) throws -> String {
    guard let path = toolPath(name) else {
      throw HarnessError(
        "\(name) not found in \(searchDirectories.joined(separator: ", ")) or PATH")
    }
    return path
  }

  struct Output {
    let exit: ChildExit
    let stdout: String
    let stderr: String
    var succeeded: Bool { exit == .exited(code: 0) }
  }

  private static let outputCounter = LabCounter()

  /// Runs `arguments[0]` (a tool name or an absolute path) and waits for it, blocking the
  /// calling thread: these tools finish in milliseconds, and cleanup must work without a
  /// running async context.
  static func run(_ arguments: [String], timeoutMs: Int = 15_000) throws -> Output {
    precondition(!arguments.isEmpty, "no command")
    let executable =
      arguments[0].hasPrefix("/") ? arguments[0] : try requireTool(arguments[0])
    // In /tmp like the labs, where the sweeper finds what a crashed run left.
    let stem = "/tmp/\(NetworkLab.namePrefix)-command-\(getpid())-\(outputCounter.next())"
    let stdoutPath = stem + ".out"
    let stderrPath = stem + ".err"
    defer {
      unlink(stdoutPath)
      unlink(stderrPath)
    }
    let environment = ProcessInfo.processInfo.environment.merging(["LC_ALL": "C"]) { $1 }
    let pid: pid_t
    do {
      pid = try ChildProcess.spawn(
        executable: executable, arguments: Array(arguments.dropFirst()),
        streams: ChildStreams(stdoutPath: stdoutPath, stderrPath: stderrPath, append: false),
        environment: environment)
    } catch {
      throw HarnessError("cannot run \(arguments.joined(separator: " ")): \(error)")
    }
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var exit: ChildExit?
    while exit == nil {
      exit = try? ChildProcess.reapIfExited(pid)
      if exit != nil { break }
      if ContinuousClock.now > deadline {
        kill(pid, SIGKILL)
        while (try? ChildProcess.reapIfExited(pid)) == nil { usleep(1_000) }
        throw HarnessError(
          "\(arguments.joined(separator: " ")) did not finish within \(timeoutMs) ms")
      }
      usleep(500)
    }
    let stdout = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
    let stderr = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
    return Output(exit: exit ?? .exited(code: -1), stdout: stdout, stderr: stderr)
  }

  /// Runs a command and throws with its stderr unless it exits with code 0.
  @discardableResult
  static func check(_ arguments: [String], timeoutMs: Int = 15_000) throws -> String {
    let output = try run(arguments, timeoutMs: timeoutMs)
    guard output.succeeded else {
      throw HarnessError(
        "\(arguments.joined(separator: " ")) failed (\(output.exit)): "
          + output.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
    }
    return output.stdout
  }

  /// `command` run inside network namespace `namespace` (`ip netns exec`).
  static func inNamespace(_ namespace: String, _ command: [String]) throws -> [String] {
    [try requireTool("ip"), "netns", "exec", namespace] + command
  }
}

/// A thread-safe increasing counter (unique file names, fault ids).
final class LabCounter: @unchecked Sendable {
  private let lock = NSLock()
  private var value = 0

  func next() -> Int {
    lock.withLock {
      value += 1
      return value
    }
  }
}

/// Runs a closure on a fresh thread that has joined a network namespace, so the test process
/// itself can open sockets inside the lab (readiness and metrics probes, connect checks)
/// without starting a process per probe. `setns` changes only the calling thread's namespace
/// and the thread ends after the closure, so nothing else in the process is affected.
enum NamespaceThread {
  private typealias SetNamespaceFunction = @convention(c) (Int32, Int32) -> Int32
  private static let newNetworkNamespaceFlag: Int32 = 0x4000_0000  // CLONE_NEWNET

  // Glibc's module map does not export setns (it needs _GNU_SOURCE); the symbol is in libc.
  private static let setNamespace: SetNamespaceFunction? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else {
      return nil
    }
    return unsafeBitCast(symbol, to: SetNamespaceFunction.self)
  }()

  static func run<Result: Sendable>(
    inNamespace namespace: String, _ body: @escaping @Sendable () -> Result
  ) async throws -> Result {
    try await withCheckedThrowingContinuation { continuation in
      let thread = Thread {
        guard let setNamespace else {
          continuation.resume(throwing: HarnessError("setns is not available in libc"))
          return
        }
        let path = "/run/netns/\(namespace)"
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
          continuation.resume(
            throwing: HarnessError("cannot open \(path): \(String(cString: strerror(errno)))"))
          return
        }
        defer { close(descriptor) }
        guard setNamespace(descriptor, newNetworkNamespaceFlag) == 0 else {
          continuation.resume(
            throwing: HarnessError(
              "setns(\(path)) failed: \(String(cString: strerror(errno)))"))
          return
        }
        continuation.resume(returning: body())
      }
      thread.name = "sbc-netns-probe"
      thread.start()
    }
  }
}

/// Connects to `host:port` with a timeout; true when the TCP handshake completed.
func labTCPConnect(host: String, port: Int, timeoutMs: Int) -> Bool {
  let descriptor = labConnectedSocket(host: host, port: port, timeoutMs: timeoutMs)
  guard descriptor >= 0 else { return false }
  close(descriptor)
  return true
}

/// A blocking TCP socket connected to `host:port` within `timeoutMs`, with send and receive
/// timeouts of `timeoutMs`; -1 when the connection could not be made.
func labConnectedSocket(host: String, port: Int, timeoutMs: Int) -> Int32 {
  let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard descriptor >= 0 else { return -1 }
  var keep = false
  defer { if !keep { close(descriptor) } }
  let flags = fcntl(descriptor, F_GETFL, 0)
  _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = in_port_t(UInt16(clamping: port).bigEndian)
  guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return -1 }
  let started = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
    }
  }
  if started != 0 {
    guard errno == EINPROGRESS else { return -1 }
    var pollDescriptor = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
    guard poll(&pollDescriptor, 1, Int32(timeoutMs)) == 1 else { return -1 }
    var socketError: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    guard getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &socketError, &length) == 0,
      socketError == 0
    else { return -1 }
  }
  _ = fcntl(descriptor, F_SETFL, flags)
  var timeout = timeval(tv_sec: timeoutMs / 1000, tv_usec: (timeoutMs % 1000) * 1000)
  setsockopt(
    descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
  setsockopt(
    descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
  keep = true
  return descriptor
}
