using LabelTuning.BuildTools;

return args switch
{
    ["publicize", var input, var output] => Publicizer.Run(input, output),
    ["fix-native", var directory, var shimSource] => NativeFix.Run(directory, shimSource),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: BuildTools publicize <in.dll> <out.dll> | fix-native <output-dir> <shim.c>");
    return 2;
}
