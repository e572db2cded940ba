"""nst-train-multistyle: train a Dumoulin et al. 2017 conditional-instance-norm net for N styles.

    nst-train-multistyle --flagfile=configs/multistyle_monet_vangogh.flags

Add styles to a trained net later, training only their gamma/beta (the old
styles' outputs stay bit-identical; the base run is left unchanged):

    nst-train-multistyle --base_dir=runs/multistyle_monet_vangogh \\
        --add_style=data/styles/the_scream.jpg --output_dir=runs/multistyle_plus_scream
"""

from nst_tf import cli
from nst_tf.cli import training

training.define_feedforward_flags(multistyle=True)
main = training.feedforward_main(multistyle=True)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
