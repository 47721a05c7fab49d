"""Write gallery PNGs of the ground pool: ``python -m visual_grounds -o grounds.png``."""

from __future__ import annotations

import argparse

from defusion.images import save_png

from .pool import GroundPool


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m visual_grounds", description=__doc__)
    p.add_argument("-o", "--output", default="grounds.png", help="PNG of composed grounds")
    p.add_argument("--elements", default=None, help="also write a PNG of every element, one row a category")
    p.add_argument("-n", type=int, default=16, help="number of grounds")
    p.add_argument("--cols", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--natural-image-dir", default=None, help="folder of photos to crop as natural elements")
    args = p.parse_args(argv)
    pool = GroundPool(size=args.size, natural_image_dir=args.natural_image_dir)
    print(save_png(pool.gallery(args.n, args.seed, args.cols), args.output))
    if args.elements:
        print(save_png(pool.element_gallery(args.seed), args.elements))


if __name__ == "__main__":
    main()
