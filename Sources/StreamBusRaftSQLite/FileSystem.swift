#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// An exclusive `flock` on `<database>.lock`, held while the storage is open.
///
/// SQLite lets any number of connections write one file, so without this two processes started
/// for the same node (a stale one and its replacement) would both append to the log and vote.
/// `flock` locks belong to the open file description: a second open in the same process is
/// refused too, and the kernel drops the lock when the holder dies, so there is no stale lock to
/// clean up after a crash.
final class DatabaseLock {
  let path: String
  private var descriptor: Int32

  init(databasePath: String) throws {
    path = databasePath + ".lock"
    descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw SQLiteRaftStorageError(
        code: .fileSystem, message: "cannot open lock file \(path): \(errnoText())",
        path: databasePath)
    }
    guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
      let reason = errno
      close(descriptor)
      descriptor = -1
      if reason == EWOULDBLOCK {
        throw SQLiteRaftStorageError(
          code: .alreadyOpen,
          message: "the database is already open in another process or storage object"
            + " (lock file \(path) is held)",
          path: databasePath)
      }
      throw SQLiteRaftStorageError(
        code: .fileSystem, message: "cannot lock \(path): \(errnoText(reason))",
        path: databasePath)
    }
  }

  func release() {
    guard descriptor >= 0 else { return }
    // Closing the descriptor drops the flock.
    close(descriptor)
    descriptor = -1
  }

  deinit {
    release()
  }
}

/// fsyncs the directory holding `filePath`, so a newly created file's directory entry survives a
/// power loss (fsync of the file alone does not make its name durable).
func syncParentDirectory(of filePath: String) throws {
  let directory: String
  if let slash = filePath.lastIndex(of: "/") {
    directory = slash == filePath.startIndex ? "/" : String(filePath[..<slash])
  } else {
    directory = "."
  }
  let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
  guard descriptor >= 0 else {
    throw SQLiteRaftStorageError(
      code: .fileSystem, message: "cannot open directory \(directory): \(errnoText())",
      path: filePath)
  }
  defer { close(descriptor) }
  guard fsync(descriptor) == 0 else {
    throw SQLiteRaftStorageError(
      code: .fileSystem, message: "cannot fsync directory \(directory): \(errnoText())",
      path: filePath)
  }
}

private func errnoText(_ code: Int32 = errno) -> String {
  String(cString: strerror(code))
}
