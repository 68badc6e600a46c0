#!/usr/bin/perl
# dh --with panthera (or Build-Depends: dh-sequence-panthera): runs dh_panthera once the
# plugin files are in the package trees and before the maintainer scripts are assembled.
use strict;
use warnings;
use Debian::Debhelper::Dh_Lib;

insert_before('dh_installdeb', 'dh_panthera');

1;
