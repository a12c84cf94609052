using System.Diagnostics;
using System.Text;

namespace LabelTuning.BuildTools;

/// <summary>
/// TorchSharp 0.107.0's libLibTorchSharp.so asks for GLIBCXX_3.4.32 for one symbol,
/// <c>std::ios_base_library_init()</c>, which Debian 12 and Ubuntu 22.04 do not have. Where the
/// system libstdc++ lacks that version, this builds a shim that defines the symbol, marks the
/// version need weak, and adds the shim as NEEDED. Where libstdc++ is new enough it does nothing.
/// </summary>
internal static class NativeFix
{
    private const string NativeName = "libLibTorchSharp.so";
    private const string ShimName = "liblabeltuning_glibcxx_shim.so";
    private const string MissingVersion = "GLIBCXX_3.4.32";

    public static int Run(string directory, string shimSource)
    {
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }

        var targets = Directory.Exists(directory)
            ? Directory.GetFiles(directory, NativeName, SearchOption.AllDirectories)
            : [];
        if (targets.Length == 0)
        {
            return 0;
        }

        var libstdcxx = FindLibStdCxx();
        if (libstdcxx is not null && Elf.DefinesVersion(libstdcxx, MissingVersion))
        {
            return 0; // the system is new enough
        }

        foreach (var target in targets)
        {
            if (!Elf.NeedsVersion(target, MissingVersion, out var alreadyWeak))
            {
                continue;
            }

            var shim = Path.Combine(Path.GetDirectoryName(target)!, ShimName);
            if (!File.Exists(shim) || File.GetLastWriteTimeUtc(shim) < File.GetLastWriteTimeUtc(shimSource))
            {
                Execute(FindCompiler(), $"-shared -fPIC -O2 -o \"{shim}\" \"{shimSource}\"");
            }

            if (!alreadyWeak)
            {
                Elf.MarkVersionNeedWeak(target, MissingVersion);
            }

            if (!Elf.HasNeeded(target, ShimName))
            {
                Execute("patchelf", $"--add-needed {ShimName} \"{target}\"");
            }

            Console.WriteLine($"fixed {target}: {MissingVersion} need marked weak, {ShimName} added (system libstdc++ lacks it)");
        }

        return 0;
    }

    private static string? FindLibStdCxx()
    {
        string[] candidates =
        [
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
            "/usr/lib64/libstdc++.so.6",
            "/usr/lib/libstdc++.so.6",
            "/lib/x86_64-linux-gnu/libstdc++.so.6",
        ];
        return candidates.FirstOrDefault(File.Exists);
    }

    private static string FindCompiler()
    {
        foreach (var name in new[] { "cc", "gcc", "clang" })
        {
            if (OnPath(name))
            {
                return name;
            }
        }

        throw new InvalidOperationException(
            "The system libstdc++ lacks GLIBCXX_3.4.32, which TorchSharp's native library needs, and no C compiler " +
            "(cc, gcc or clang) was found to build the compatibility shim. Install one (apt-get install gcc patchelf) " +
            "or run ./build.sh, which installs them. See docs/troubleshooting.md.");
    }

    private static bool OnPath(string name)
        => (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, name)));

    private static void Execute(string program, string arguments)
    {
        if (!program.Contains('/') && !OnPath(program))
        {
            throw new InvalidOperationException(
                $"'{program}' is needed to patch {NativeName} for this distro's older libstdc++ but is not installed. " +
                "Run ./build.sh (it installs gcc and patchelf) or apt-get install gcc patchelf. See docs/troubleshooting.md.");
        }

        using var process = Process.Start(new ProcessStartInfo(program, arguments) { RedirectStandardError = true })!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{program} {arguments}' failed with exit code {process.ExitCode}: {error}");
        }
    }
}

/// <summary>Just enough ELF64 little-endian parsing to read and flag version needs.</summary>
internal static class Elf
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const uint ShtGnuVerdef = 0x6ffffffd;
    private const uint ShtDynamic = 6;
    private const ushort VerFlgWeak = 0x2;

    public static bool DefinesVersion(string path, string version)
    {
        var data = File.ReadAllBytes(path);
        foreach (var (section, link) in Sections(data, ShtGnuVerdef))
        {
            var offset = (int)section;
            while (true)
            {
                var cnt = BitConverter.ToUInt16(data, offset + 6);
                var aux = BitConverter.ToUInt32(data, offset + 12);
                var next = BitConverter.ToUInt32(data, offset + 16);
                var auxOffset = offset + (int)aux;
                for (var i = 0; i < cnt; i++)
                {
                    var name = BitConverter.ToUInt32(data, auxOffset);
                    if (ReadString(data, link, name) == version)
                    {
                        return true;
                    }

                    auxOffset += (int)BitConverter.ToUInt32(data, auxOffset + 4);
                }

                if (next == 0)
                {
                    break;
                }

                offset += (int)next;
            }
        }

        return false;
    }

    public static bool NeedsVersion(string path, string version, out bool weak)
    {
        var data = File.ReadAllBytes(path);
        var found = FindVernaux(data, version);
        weak = found >= 0 && (BitConverter.ToUInt16(data, found + 4) & VerFlgWeak) != 0;
        return found >= 0;
    }

    public static void MarkVersionNeedWeak(string path, string version)
    {
        var data = File.ReadAllBytes(path);
        var aux = FindVernaux(data, version);
        if (aux < 0)
        {
            return;
        }

        var flags = (ushort)(BitConverter.ToUInt16(data, aux + 4) | VerFlgWeak);
        BitConverter.GetBytes(flags).CopyTo(data, aux + 4);
        var temp = path + ".tmp";
        File.WriteAllBytes(temp, data);
        File.Move(temp, path, overwrite: true);
    }

    public static bool HasNeeded(string path, string library)
    {
        var data = File.ReadAllBytes(path);
        foreach (var (section, link, size) in SectionsWithSize(data, ShtDynamic))
        {
            for (var entry = (int)section; entry < (int)(section + size); entry += 16)
            {
                var tag = BitConverter.ToInt64(data, entry);
                if (tag == 0)
                {
                    break;
                }

                if (tag == 1 && ReadString(data, link, (uint)BitConverter.ToUInt64(data, entry + 8)) == library)
                {
                    return true;
                }
            }
        }

        return false;
    }

    private static int FindVernaux(byte[] data, string version)
    {
        foreach (var (section, link) in Sections(data, ShtGnuVerneed))
        {
            var offset = (int)section;
            while (true)
            {
                var cnt = BitConverter.ToUInt16(data, offset + 2);
                var aux = BitConverter.ToUInt32(data, offset + 8);
                var next = BitConverter.ToUInt32(data, offset + 12);
                var auxOffset = offset + (int)aux;
                for (var i = 0; i < cnt; i++)
                {
                    var name = BitConverter.ToUInt32(data, auxOffset + 8);
                    if (ReadString(data, link, name) == version)
                    {
                        return auxOffset;
                    }

                    auxOffset += (int)BitConverter.ToUInt32(data, auxOffset + 12);
                }

                if (next == 0)
                {
                    break;
                }

                offset += (int)next;
            }
        }

        return -1;
    }

    private static IEnumerable<(ulong Offset, ulong LinkOffset)> Sections(byte[] data, uint type)
        => SectionsWithSize(data, type).Select(s => (s.Offset, s.LinkOffset));

    private static IEnumerable<(ulong Offset, ulong LinkOffset, ulong Size)> SectionsWithSize(byte[] data, uint type)
    {
        if (data.Length < 64 || data[0] != 0x7f || data[1] != (byte)'E' || data[4] != 2 || data[5] != 1)
        {
            throw new InvalidDataException("Not a 64-bit little-endian ELF file.");
        }

        var shoff = BitConverter.ToUInt64(data, 0x28);
        var shentsize = BitConverter.ToUInt16(data, 0x3a);
        var shnum = BitConverter.ToUInt16(data, 0x3c);
        for (var i = 0; i < shnum; i++)
        {
            var header = (int)shoff + i * shentsize;
            if (BitConverter.ToUInt32(data, header + 4) != type)
            {
                continue;
            }

            var offset = BitConverter.ToUInt64(data, header + 0x18);
            var size = BitConverter.ToUInt64(data, header + 0x20);
            var link = BitConverter.ToUInt32(data, header + 0x28);
            var linkHeader = (int)shoff + (int)link * shentsize;
            var linkOffset = BitConverter.ToUInt64(data, linkHeader + 0x18);
            yield return (offset, linkOffset, size);
        }
    }

    private static string ReadString(byte[] data, ulong tableOffset, uint index)
    {
        var start = (int)(tableOffset + index);
        var end = Array.IndexOf(data, (byte)0, start);
        return Encoding.ASCII.GetString(data, start, end - start);
    }
}
