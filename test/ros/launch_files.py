#!/usr/bin/env python3
"""Reads the package's launch files without ROS 2 and prints, as JSON, what launch_ros would run.

Python launch files are parsed with `ast` (never imported: `launch` is not installed here) and
their substitutions evaluated for the launch arguments' defaults (or overrides given as
NAME:=VALUE after the file): LaunchConfiguration, PathJoinSubstitution, FindPackageShare,
string lists. XML launch files are parsed with ElementTree, $(var), $(find-pkg-share) and
$(env) substituted. For each node: package, executable, name, namespace, the ROS arguments it
passes, its remappings and environment.

    test/ros/launch_files.py SHARE_ROOT FILE [NAME:=VALUE ...]

SHARE_ROOT stands for every `share/<package>` (the installed share mirrors the repository).
"""
import ast
import json
import os
import re
import shlex
import sys
import xml.etree.ElementTree as ET


class LaunchError(Exception):
    pass


def _kw(call, name):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _call_name(node):
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Name):
            return f.id
        if isinstance(f, ast.Attribute):
            return f.attr
    return None


def python_launch(path, share_root, overrides):
    tree = ast.parse(open(path, encoding='utf-8').read(), filename=path)
    gen = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description'), None)
    if gen is None:
        raise LaunchError(f'{path}: no generate_launch_description()')
    aliases = {}   # local name -> expression (arg = LaunchConfiguration, share = FindPackageShare(...))
    for st in gen.body:
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
            aliases[st.targets[0].id] = st.value
    ret = next((st.value for st in gen.body if isinstance(st, ast.Return)), None)
    if not (isinstance(ret, ast.Call) and _call_name(ret) == 'LaunchDescription' and ret.args and isinstance(ret.args[0], ast.List)):
        raise LaunchError(f'{path}: generate_launch_description must return LaunchDescription([...])')
    actions = ret.args[0].elts
    args = {}
    order = []
    used = set()

    def resolve_alias(node):
        seen = 0
        while isinstance(node, ast.Name) and node.id in aliases and seen < 10:
            node = aliases[node.id]
            seen += 1
        return node

    def ev(node):
        node = resolve_alias(node)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.List):
            return ''.join(ev(e) for e in node.elts)
        if isinstance(node, ast.Call):
            fn = node.func
            fn_name = resolve_alias(fn).id if isinstance(resolve_alias(fn), ast.Name) else _call_name(node)
            if isinstance(fn, ast.Name) and fn.id in aliases:
                fn_name = aliases[fn.id].id if isinstance(aliases[fn.id], ast.Name) else fn_name
            if fn_name == 'LaunchConfiguration':
                name = ev(node.args[0])
                used.add(name)
                if name in overrides:
                    return overrides[name]
                if name not in args:
                    raise LaunchError(f'{path}: LaunchConfiguration({name!r}) has no DeclareLaunchArgument')
                return args[name]
            if fn_name == 'FindPackageShare':
                return share_root
            if fn_name == 'PathJoinSubstitution':
                return os.path.join(*[ev(e) for e in node.args[0].elts])
        raise LaunchError(f'{path}:{getattr(node, "lineno", "?")}: cannot evaluate {ast.dump(node)[:80]}')

    nodes = []
    for a in actions:
        kind = _call_name(a)
        if kind == 'DeclareLaunchArgument':
            name = ev(a.args[0])
            default = _kw(a, 'default_value')
            args[name] = ev(default) if default is not None else None
            order.append(name)
        elif kind in ('Node', 'LifecycleNode'):
            ros_args = _kw(a, 'ros_arguments')
            remaps = _kw(a, 'remappings')
            env = _kw(a, 'additional_env')
            nodes.append({
                'action': kind,
                'package': ev(_kw(a, 'package')),
                'executable': ev(_kw(a, 'executable')),
                'name': ev(_kw(a, 'name')),
                'namespace': ev(_kw(a, 'namespace')) if _kw(a, 'namespace') is not None else '',
                'ros_args': [ev(e) for e in ros_args.elts] if ros_args is not None else [],
                'remaps': [[ev(t.elts[0]), ev(t.elts[1])] for t in remaps.elts] if remaps is not None else [],
                'env': {ev(k): ev(v) for k, v in zip(env.keys, env.values)} if env is not None else {},
            })
        else:
            raise LaunchError(f'{path}: unexpected action {kind}')
    return {'file': path, 'args': {n: args[n] for n in order}, 'unused_args': [n for n in order if n not in used], 'nodes': nodes}


def xml_launch(path, share_root, overrides):
    root = ET.parse(path).getroot()
    if root.tag != 'launch':
        raise LaunchError(f'{path}: root element is {root.tag}, not launch')
    args, order, used = {}, [], set()

    def sub(text):
        def one(m):
            kind, val = m.group(1), m.group(2).strip()
            if kind == 'var':
                used.add(val)
                if val in overrides:
                    return overrides[val]
                if val not in args:
                    raise LaunchError(f'{path}: $(var {val}) has no <arg>')
                return args[val]
            if kind == 'find-pkg-share':
                return share_root
            if kind == 'env':
                return os.environ.get(val, '')
            raise LaunchError(f'{path}: unknown substitution $({kind} ...)')
        return re.sub(r'\$\(([a-z-]+) ([^)]*)\)', one, text or '')

    nodes = []
    for el in root:
        if el.tag == 'arg':
            name = el.get('name')
            args[name] = sub(el.get('default')) if el.get('default') is not None else None
            order.append(name)
        elif el.tag == 'node':
            nodes.append({
                'action': 'Node',
                'package': sub(el.get('pkg')),
                'executable': sub(el.get('exec')),
                'name': sub(el.get('name')),
                'namespace': sub(el.get('namespace') or ''),
                'ros_args': shlex.split(sub(el.get('ros_args') or '')),
                'remaps': [[sub(r.get('from')), sub(r.get('to'))] for r in el.findall('remap')],
                'env': {e.get('name'): sub(e.get('value')) for e in el.findall('env')},
                'params': [p.attrib for p in el.findall('param')],
            })
        else:
            raise LaunchError(f'{path}: unexpected element <{el.tag}>')
    return {'file': path, 'args': {n: args[n] for n in order}, 'unused_args': [n for n in order if n not in used], 'nodes': nodes}


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    share_root, path = argv[1], argv[2]
    overrides = dict(a.split(':=', 1) for a in argv[3:])
    try:
        out = xml_launch(path, share_root, overrides) if path.endswith('.xml') else python_launch(path, share_root, overrides)
    except (LaunchError, SyntaxError, ET.ParseError) as e:
        print(json.dumps({'error': str(e)}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
