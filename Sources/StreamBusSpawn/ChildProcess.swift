import CStreamBusSpawn

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A failure to start or to wait for a child process.
public struct SpawnError: Error, CustomStringConvertible, Sendable {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// How a child process ended.
public enum ChildExit: Equatable, Sendable, CustomStringConvertible {
  case exited(code: Int32)
  case signaled(signal: Int32)

  public var description: String {
    switch self {
    case .exited(let code): return "exit code \(code)"
    case .signaled(let signal): return "killed by signal \(signal)"
    }
  }
}

/// Where a child's standard streams go. Paths are opened in the child, so nothing of the
/// parent's is shared with it.
public struct ChildStreams: Sendable {
  /// Read by the child as stdin; nil means /dev/null.
  public var stdinPath: String?
  public var stdoutPath: String
  /// nil sends stderr to the stdout file.
  public var stderrPath: String?
  /// Append to the output files instead of truncating them.
  public var append: Bool

  public init(stdinPath: String? = nil, stdoutPath: String, stderrPath: String?, append: Bool) {
    self.stdinPath = stdinPath
    self.stdoutPath = stdoutPath
    self.stderrPath = stderrPath
    self.append = append
  }
}

/// Starting and reaping child processes with `posix_spawn` and `waitpid` on the child's own
/// pid.
///
/// Foundation's `Process` on Linux learns of a child's exit through a socket the child
/// inherits; a sibling spawned at the same moment can inherit it too, and then the exit is
/// never seen and `waitUntilExit()` blocks for ever (swift-corelibs-foundation#4795). A test
/// run hung for 90 minutes that way. Here the child keeps nothing but its three streams, and
/// its exit is read from the kernel, where it cannot be missed.
public enum ChildProcess {
  /// `posix_spawn` flag that puts the child in a new session (glibc's POSIX_SPAWN_SETSID).
  private static let spawnSetSessionFlag: Int16 = 0x80

  /// Starts `executable` (a path) and returns its pid. Signal dispositions and the signal
  /// mask are reset to defaults in the child: an ignored or blocked SIGTERM inherited from
  /// the parent would make a server unstoppable.
  ///
  /// - Parameter newSession: detach the child from the parent's session and terminal
  ///   (`sbctl local` daemons); such a child is reaped by init if the parent exits first.
  public static func spawn(
    executable: String, arguments: [String], streams: ChildStreams,
    environment: [String: String], newSession: Bool = false
  ) throws -> pid_t {
    var fileActions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fileActions)
    defer { posix_spawn_file_actions_destroy(&fileActions) }
    let outputFlags = O_WRONLY | O_CREAT | (streams.append ? O_APPEND : O_TRUNC)
    posix_spawn_file_actions_addopen(
      &fileActions, 0, streams.stdinPath ?? "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&fileActions, 1, streams.stdoutPath, outputFlags, 0o644)
    if let stderrPath = streams.stderrPath {
      posix_spawn_file_actions_addopen(&fileActions, 2, stderrPath, outputFlags, 0o644)
    } else {
      posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
    }
    // Everything above the three streams is closed in the child, including descriptors
    // another thread opens without O_CLOEXEC while this spawn runs.
    let closeResult = streambus_spawn_addclosefrom(&fileActions, 3)
    guard closeResult == 0 else {
      throw SpawnError(
        "cannot start \(executable): closing inherited descriptors is not supported: "
          + String(cString: strerror(closeResult)))
    }

    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var defaultSignals = sigset_t()
    sigfillset(&defaultSignals)
    posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
    var emptyMask = sigset_t()
    sigemptyset(&emptyMask)
    posix_spawnattr_setsigmask(&attributes, &emptyMask)
    var flags = Int16(POSIX_SPAWN_SETSIGDEF) | Int16(POSIX_SPAWN_SETSIGMASK)
    if newSession { flags |= spawnSetSessionFlag }
    posix_spawnattr_setflags(&attributes, flags)

    let argv = [executable] + arguments
    var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
    cArguments.append(nil)
    defer { for pointer in cArguments { free(pointer) } }
    var cEnvironment: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0)=\($1)") }
    cEnvironment.append(nil)
    defer { for pointer in cEnvironment { free(pointer) } }

    var pid: pid_t = 0
    let result = posix_spawn(&pid, executable, &fileActions, &attributes, cArguments, cEnvironment)
    guard result == 0 else {
      throw SpawnError("cannot start \(executable): \(String(cString: strerror(result)))")
    }
    return pid
  }

  /// The child's exit if it has ended, reaping it; nil while it runs. Call once per exit:
  /// after a non-nil answer the pid is free for reuse.
  public static func reapIfExited(_ pid: pid_t) throws -> ChildExit? {
    var status: Int32 = 0
    while true {
      let result = waitpid(pid, &status, WNOHANG)
      if result == 0 { return nil }
      if result == pid { return decode(status) }
      if errno == EINTR { continue }
      throw SpawnError("waitpid(\(pid)) failed: \(String(cString: strerror(errno)))")
    }
  }

  /// Decodes a `waitpid` status (the W* macros are not imported into Swift).
  static func decode(_ status: Int32) -> ChildExit {
    let signal = status & 0x7f
    if signal == 0 { return .exited(code: (status >> 8) & 0xff) }
    return .signaled(signal: signal)
  }
}
