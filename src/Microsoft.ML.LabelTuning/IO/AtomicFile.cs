using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace Microsoft.ML.LabelTuning.IO;

/// <summary>
/// Writes a file atomically: a hidden temporary file in the same folder (<c>.name.&lt;guid&gt;.tmp</c>) is written and
/// flushed to disk, renamed over the target, and on Linux and macOS the folder is flushed too so that the rename
/// itself survives a power cut. A process killed at any moment leaves the target either as it was or as written, never
/// half-written; at worst a temporary file stays behind, which no loader opens (their names are fixed) and which
/// <see cref="DeleteTemporaryFiles"/> clears.
/// </summary>
internal static partial class AtomicFile
{
    /// <summary>Runs <paramref name="write"/> against a temporary file and moves it to <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(folder);
        var temp = TemporaryPath(full);
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }

        FlushFolder(folder);
    }

    /// <summary>Writes UTF-8 text atomically.</summary>
    public static void WriteText(string path, string text)
        => Write(path, stream => stream.Write(new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text)));

    /// <summary>The temporary file a write of <paramref name="fullPath"/> goes through: hidden, unique, beside it.</summary>
    internal static string TemporaryPath(string fullPath)
        => Path.Combine(Path.GetDirectoryName(fullPath)!, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");

    /// <summary>
    /// Deletes the temporary files that interrupted writes of <paramref name="fileNames"/> in <paramref name="folder"/>
    /// left behind. Only for folders one writer owns (a training run's checkpoint folder): another process's write in
    /// progress would lose its temporary file.
    /// </summary>
    /// <returns>The number of files deleted.</returns>
    public static int DeleteTemporaryFiles(string folder, params string[] fileNames)
    {
        var deleted = 0;
        foreach (var name in fileNames)
        {
            foreach (var candidate in Directory.EnumerateFiles(folder, $".{name}.*.tmp"))
            {
                if (IsTemporaryFor(Path.GetFileName(candidate), name) && TryDelete(candidate))
                {
                    deleted++;
                }
            }
        }

        return deleted;
    }

    /// <summary>Whether <paramref name="fileName"/> is a temporary file of a write of <paramref name="target"/>.</summary>
    internal static bool IsTemporaryFor(string fileName, string target)
        => fileName.StartsWith($".{target}.", StringComparison.Ordinal) && TemporarySuffix().IsMatch(fileName[(target.Length + 2)..]);

    [GeneratedRegex("^[0-9a-f]{32}\\.tmp$")]
    private static partial Regex TemporarySuffix();

    private static bool TryDelete(string path)
    {
        try
        {
            File.Delete(path);
            return true;
        }
        catch (IOException)
        {
            return false; // Best effort: the temporary file is hidden and named uniquely.
        }
        catch (UnauthorizedAccessException)
        {
            return false; // Best effort, as above.
        }
    }

    /// <summary>fsync on the folder, so that the rename is on disk; best effort, and a no-op on Windows.</summary>
    private static void FlushFolder(string folder)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        try
        {
            var fd = NativeMethods.Open(folder, 0); // O_RDONLY
            if (fd >= 0)
            {
                _ = NativeMethods.Fsync(fd);
                _ = NativeMethods.Close(fd);
            }
        }
        catch (DllNotFoundException)
        {
            // No libc to call: the rename is still atomic, only its durability across a power cut is not forced.
        }
        catch (EntryPointNotFoundException)
        {
            // As above.
        }
    }

    private static partial class NativeMethods
    {
        [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int Open(string path, int flags);

        [LibraryImport("libc", EntryPoint = "fsync")]
        internal static partial int Fsync(int fd);

        [LibraryImport("libc", EntryPoint = "close")]
        internal static partial int Close(int fd);
    }
}
