import Foundation

/// Finds the executables this package builds (`databroker`, `sbctl`) next to the running
/// binary, so tests and `sbbench --spawn` run exactly the build they were built with.
///
/// Search order: `$STREAMBUS_BIN_DIR`, the directory of the running executable
/// (`swift test` runs the test bundle from the build directory, `sbbench` lives there too),
/// then `<package>/.build/{debug,release}` derived from this source file's path.
public enum ExecutableLocator {
  public static let binDirectoryEnvironmentKey = "STREAMBUS_BIN_DIR"

  /// Directories searched, in order (only existing ones).
  public static func searchDirectories(
    preferring configuration: BuildConfiguration? = nil
  ) -> [URL] {
    var directories: [URL] = []
    if let override = ProcessInfo.processInfo.environment[binDirectoryEnvironmentKey],
      !override.isEmpty
    {
      directories.append(URL(fileURLWithPath: override, isDirectory: true))
    }
    if let running = runningExecutableDirectory() {
      directories.append(running)
    }
    let packageRoot = URL(fileURLWithPath: #filePath)
      .deletingLastPathComponent()  // StreamBusTestSupport
      .deletingLastPathComponent()  // Sources
      .deletingLastPathComponent()  // package root
    let configurations: [BuildConfiguration] =
      configuration == .release ? [.release, .debug] : [.debug, .release]
    for candidate in configurations {
      directories.append(
        packageRoot.appendingPathComponent(".build/\(candidate.rawValue)", isDirectory: true))
    }
    return directories.filter { FileManager.default.fileExists(atPath: $0.path) }
  }

  /// The path of the named executable, or an error listing where it looked.
  public static func executable(
    named name: String, preferring configuration: BuildConfiguration? = nil
  ) throws -> URL {
    let directories = searchDirectories(preferring: configuration)
    for directory in directories {
      let candidate = directory.appendingPathComponent(name)
      if FileManager.default.isExecutableFile(atPath: candidate.path) {
        return candidate.resolvingSymlinksInPath()
      }
    }
    throw HarnessError(
      "executable '\(name)' not found; build it first (swift build --product \(name)). "
        + "Searched: \(directories.map(\.path).joined(separator: ", ")); "
        + "set \(binDirectoryEnvironmentKey) to override")
  }

  private static func runningExecutableDirectory() -> URL? {
    #if os(Linux)
      let selfPath = "/proc/self/exe"
      if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: selfPath) {
        return URL(fileURLWithPath: resolved).deletingLastPathComponent()
      }
    #endif
    if let executable = Bundle.main.executableURL {
      return executable.resolvingSymlinksInPath().deletingLastPathComponent()
    }
    return nil
  }
}

public enum BuildConfiguration: String, Sendable, CaseIterable {
  case debug
  case release
}

/// A failure of the harness itself (setup, timeouts, unexpected exits), with a message that
/// says what was expected and what happened.
public struct HarnessError: Error, CustomStringConvertible, Sendable {
  public let message: String

  public init(_ message: String) {
    self.message = message
  }

  public var description: String { message }
}
