import Glibc

/// How to open a file.
public enum FileOpenMode: Sendable {
  case readOnly
  case readWrite
  /// Read-write, creating the file if missing and keeping existing contents.
  case createReadWrite
  /// Write-only, created or emptied.
  case createTruncate
}

/// The few POSIX calls the log needs, behind a protocol so tests can inject ENOSPC, EIO and
/// short writes. Methods mirror one system call each; failures throw `StorageError` with
/// the `errno`. File descriptors are plain `Int32`s.
public protocol LogFileSystem: Sendable {
  func open(_ path: String, _ mode: FileOpenMode) throws -> Int32
  func close(_ descriptor: Int32)
  /// One `pwrite(2)`; may write fewer bytes than given.
  func write(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, at position: Int64) throws
    -> Int
  /// One `pread(2)`; returns fewer bytes than asked at end of file.
  func read(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, at position: Int64)
    throws -> Int
  /// `fdatasync(2)`.
  func syncData(_ descriptor: Int32) throws
  /// `ftruncate(2)`.
  func truncate(_ descriptor: Int32, to length: Int64) throws
  /// File size from `fstat(2)`.
  func size(_ descriptor: Int32) throws -> Int64
  /// `rename(2)`: atomic replacement of `destination`.
  func rename(_ source: String, to destination: String) throws
  /// `unlink(2)`.
  func remove(_ path: String) throws
  /// Names of the entries of a directory, without "." and "..".
  func contentsOfDirectory(_ path: String) throws -> [String]
  /// `mkdir(2)` of `path` and any missing parents.
  func createDirectory(_ path: String) throws
  /// `fsync(2)` on the directory, so created, renamed and removed entries are durable.
  func syncDirectory(_ path: String) throws
  func fileExists(_ path: String) -> Bool
  /// A second descriptor for the same open file (`dup(2)`), owned by the caller, or nil
  /// when this file system has no real descriptors to share (then reads copy bytes).
  func duplicate(_ descriptor: Int32) throws -> Int32?
}

extension LogFileSystem {
  public func duplicate(_ descriptor: Int32) throws -> Int32? { nil }
}

extension LogFileSystem {
  /// Writes all of `bytes`, continuing after short writes.
  func writeAll(
    _ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, at position: Int64, path: String
  )
    throws
  {
    var written = 0
    while written < bytes.count {
      let count = try write(
        descriptor, UnsafeRawBufferPointer(rebasing: bytes[written...]),
        at: position + Int64(written))
      guard count > 0 else {
        throw StorageError(
          .ioFailure, "write to \(path) made no progress at byte \(written) of \(bytes.count)",
          path: path)
      }
      written += count
    }
  }

  /// Fills `buffer` from `position`, stopping early only at end of file; returns the count.
  func readFully(
    _ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, at position: Int64
  ) throws -> Int {
    var total = 0
    while total < buffer.count {
      let count = try read(
        descriptor, into: UnsafeMutableRawBufferPointer(rebasing: buffer[total...]),
        at: position + Int64(total))
      if count == 0 { break }
      total += count
    }
    return total
  }
}

/// The real file system over Glibc system calls.
public struct PosixFileSystem: LogFileSystem {
  public init() {}

  private func retryingInterrupts(_ call: () -> Int) -> (result: Int, errno: Int32) {
    while true {
      let result = call()
      if result >= 0 { return (result, 0) }
      let number = errno
      if number != EINTR { return (result, number) }
    }
  }

  public func open(_ path: String, _ mode: FileOpenMode) throws -> Int32 {
    let flags: Int32
    switch mode {
    case .readOnly: flags = O_RDONLY
    case .readWrite: flags = O_RDWR
    case .createReadWrite: flags = O_RDWR | O_CREAT
    case .createTruncate: flags = O_WRONLY | O_CREAT | O_TRUNC
    }
    let (result, number) = retryingInterrupts {
      Int(Glibc.open(path, flags | O_CLOEXEC, 0o644))
    }
    guard result >= 0 else { throw StorageError.systemCall("open", errno: number, path: path) }
    return Int32(result)
  }

  public func close(_ descriptor: Int32) {
    _ = Glibc.close(descriptor)
  }

  public func write(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, at position: Int64)
    throws -> Int
  {
    guard let base = bytes.baseAddress, !bytes.isEmpty else { return 0 }
    let (result, number) = retryingInterrupts {
      Glibc.pwrite(descriptor, base, bytes.count, off_t(position))
    }
    guard result >= 0 else { throw StorageError.systemCall("pwrite", errno: number, path: nil) }
    return result
  }

  public func read(
    _ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, at position: Int64
  ) throws -> Int {
    guard let base = buffer.baseAddress, !buffer.isEmpty else { return 0 }
    let (result, number) = retryingInterrupts {
      Glibc.pread(descriptor, base, buffer.count, off_t(position))
    }
    guard result >= 0 else { throw StorageError.systemCall("pread", errno: number, path: nil) }
    return result
  }

  public func syncData(_ descriptor: Int32) throws {
    let (result, number) = retryingInterrupts { Int(Glibc.fdatasync(descriptor)) }
    guard result == 0 else { throw StorageError.systemCall("fdatasync", errno: number, path: nil) }
  }

  public func truncate(_ descriptor: Int32, to length: Int64) throws {
    let (result, number) = retryingInterrupts { Int(Glibc.ftruncate(descriptor, off_t(length))) }
    guard result == 0 else { throw StorageError.systemCall("ftruncate", errno: number, path: nil) }
  }

  public func size(_ descriptor: Int32) throws -> Int64 {
    var status = stat()
    guard fstat(descriptor, &status) == 0 else {
      throw StorageError.systemCall("fstat", errno: errno, path: nil)
    }
    return Int64(status.st_size)
  }

  public func rename(_ source: String, to destination: String) throws {
    guard Glibc.rename(source, destination) == 0 else {
      throw StorageError.systemCall("rename to \(destination)", errno: errno, path: source)
    }
  }

  public func remove(_ path: String) throws {
    guard unlink(path) == 0 else {
      throw StorageError.systemCall("unlink", errno: errno, path: path)
    }
  }

  public func contentsOfDirectory(_ path: String) throws -> [String] {
    guard let directory = opendir(path) else {
      throw StorageError.systemCall("opendir", errno: errno, path: path)
    }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }

  public func createDirectory(_ path: String) throws {
    var prefix = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
      prefix += "/" + component
      if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
        throw StorageError.systemCall("mkdir", errno: errno, path: prefix)
      }
    }
  }

  public func syncDirectory(_ path: String) throws {
    let descriptor = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard descriptor >= 0 else { throw StorageError.systemCall("open", errno: errno, path: path) }
    defer { _ = Glibc.close(descriptor) }
    guard fsync(descriptor) == 0 else {
      throw StorageError.systemCall("fsync", errno: errno, path: path)
    }
  }

  public func fileExists(_ path: String) -> Bool {
    access(path, F_OK) == 0
  }

  public func duplicate(_ descriptor: Int32) throws -> Int32? {
    let (result, number) = retryingInterrupts { Int(fcntl(descriptor, F_DUPFD_CLOEXEC, 0)) }
    guard result >= 0 else { throw StorageError.systemCall("dup", errno: number, path: nil) }
    return Int32(result)
  }
}
