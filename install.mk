# ---- Installation --------------------------------------------------------
#
#   make install     installs the daemon, the CLI, the library (static and
#                    shared, with its header and libfmredis.pc), the systemd
#                    units and sysusers file, a configuration file, man pages
#                    and bash completion (the list is INSTALLED below)
#   make uninstall   removes exactly what INSTALLED names
#   make check-install  installs into a temporary DESTDIR and proves the
#                    installed tree works (tests/install/check-install.sh)
#
# PREFIX (/usr/local) and DESTDIR as usual; every directory below can be set
# on the command line, as packaging does:
#   make install PREFIX=/usr LIBDIR=/usr/lib/x86_64-linux-gnu SYSCONFDIR=/etc \
#       UNITDIR=/lib/systemd/system DESTDIR=debian/tmp
# Paths must not hold spaces or colons.
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
SBINDIR      ?= $(PREFIX)/sbin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
DATADIR      ?= $(PREFIX)/share
MANDIR       ?= $(DATADIR)/man
DOCDIR       ?= $(DATADIR)/doc/fmredisd
EXAMPLESDIR  ?= $(DOCDIR)/examples
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
BASHCOMPDIR  ?= $(DATADIR)/bash-completion/completions
# systemd searches both under /usr/local/lib as well as /usr/lib.
UNITDIR      ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR  ?= $(PREFIX)/lib/sysusers.d
ifeq ($(PREFIX),/usr)
SYSCONFDIR   ?= /etc
else
SYSCONFDIR   ?= $(PREFIX)/etc
endif

# Files made from templates (NAME.in) with the paths above and the version
# put in for @PREFIX@, @SBINDIR@, ... GEN_SUBST holds the sed script; it is
# rewritten on every run but only touched when a path changed, so changing
# PREFIX remakes the files and nothing else does.
GEN       = $(BUILD)/gen
GEN_SUBST = $(GEN)/subst.sed
SUBST_VARS = PREFIX BINDIR SBINDIR LIBDIR INCLUDEDIR SYSCONFDIR DOCDIR \
             EXAMPLESDIR VERSION
MAN_PAGES = fmredisd.8 fmredisd.conf.5 fmredis.1 libfmredis.3
GEN_FILES = $(GEN)/fmredisd.service $(GEN)/fmredisd.socket \
            $(GEN)/libfmredis.pc $(addprefix $(GEN)/,$(MAN_PAGES))

.PHONY: install uninstall check-install FORCE
$(GEN_SUBST): FORCE
	@mkdir -p $(GEN)
	@printf '%s\n' $(foreach v,$(SUBST_VARS),'s|@$(v)@|$($(v))|g') > $@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; fi

$(GEN)/%: systemd/%.in $(GEN_SUBST)
	sed -f $(GEN_SUBST) $< > $@
$(GEN)/%: client/%.in $(GEN_SUBST)
	sed -f $(GEN_SUBST) $< > $@
$(GEN)/%: docs/man/%.in $(GEN_SUBST)
	sed -f $(GEN_SUBST) $< > $@

# Everything make install puts in place, one DESTINATION:MODE:SOURCE a word.
# MODE is an octal mode; "link" makes DESTINATION a symbolic link to SOURCE;
# "conf" installs a configuration file only where none exists (a reinstall
# keeps the operator's file), and uninstall removes it only while it is
# still the shipped one.
INSTALLED = \
    $(SBINDIR)/fmredisd:755:$(DAEMON) \
    $(BINDIR)/fmredis:755:$(CLI) \
    $(LIBDIR)/libfmredis.a:644:$(LIB_A) \
    $(LIBDIR)/libfmredis.so.$(SOFULL):755:$(LIB_SO).$(SOFULL) \
    $(LIBDIR)/libfmredis.so.$(SOVERSION):link:libfmredis.so.$(SOFULL) \
    $(LIBDIR)/libfmredis.so:link:libfmredis.so.$(SOVERSION) \
    $(INCLUDEDIR)/fmredis.h:644:client/fmredis.h \
    $(INCLUDEDIR)/fm_wire.h:644:proto/fm_wire.h \
    $(PKGCONFIGDIR)/libfmredis.pc:644:$(GEN)/libfmredis.pc \
    $(UNITDIR)/fmredisd.service:644:$(GEN)/fmredisd.service \
    $(UNITDIR)/fmredisd.socket:644:$(GEN)/fmredisd.socket \
    $(UNITDIR)/fmredisd-metrics.service:644:systemd/fmredisd-metrics.service \
    $(UNITDIR)/fmredisd-metrics.timer:644:systemd/fmredisd-metrics.timer \
    $(SYSUSERSDIR)/fmredisd.conf:644:systemd/fmredisd.sysusers \
    $(SYSCONFDIR)/fmredisd/fmredisd.conf:conf:fmredisd.conf.example \
    $(EXAMPLESDIR)/fmredisd.conf.example:644:fmredisd.conf.example \
    $(BASHCOMPDIR)/fmredis:644:client/fmredis-completion.bash \
    $(foreach m,$(MAN_PAGES),$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(m):644:$(GEN)/$(m))

# The directories that are fmredisd's alone, deepest first: uninstall
# removes them once empty. Shared ones (bin, lib/systemd/system, man/man8,
# ...) stay, whether or not install created them.
OWN_DIRS = $(EXAMPLESDIR) $(DOCDIR) $(SYSCONFDIR)/fmredisd

# Run after an install into the live system (no DESTDIR) as root, so that
# the dynamic linker finds the new library; LDCONFIG=: skips it.
LDCONFIG ?= ldconfig

# Splits a word of INSTALLED into $dst (under DESTDIR), $mode and $src.
split_entry = dst=$(DESTDIR)$${e%%:*}; rest=$${e\#*:}; mode=$${rest%%:*}; src=$${rest\#*:}

install: all $(GEN_FILES)
	@set -e; for e in $(INSTALLED); do \
	    $(split_entry); \
	    mkdir -p "$$(dirname "$$dst")"; \
	    case $$mode in \
	    link) ln -sfn "$$src" "$$dst" ;; \
	    conf) if [ -e "$$dst" ]; then echo "kept      $$dst (exists)"; continue; fi; \
	          install -m 644 "$$src" "$$dst" ;; \
	    *)    install -m "$$mode" "$$src" "$$dst" ;; \
	    esac; \
	    echo "installed $$dst"; \
	done
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
	    $(LDCONFIG); \
	    echo "next: systemd-sysusers; systemctl daemon-reload;" \
	         "systemctl enable --now fmredisd (see fmredisd(8))"; \
	fi

uninstall:
	@for e in $(INSTALLED); do \
	    $(split_entry); \
	    if [ "$$mode" = conf ] && [ -e "$$dst" ] && ! cmp -s "$$src" "$$dst"; then \
	        echo "kept      $$dst (changed since installed)"; continue; \
	    fi; \
	    if [ -e "$$dst" ] || [ -L "$$dst" ]; then rm -f "$$dst" && echo "removed   $$dst"; fi; \
	done
	@for d in $(OWN_DIRS); do \
	    [ ! -d "$(DESTDIR)$$d" ] || rmdir --ignore-fail-on-non-empty "$(DESTDIR)$$d"; \
	done

# Installs into a temporary DESTDIR (and a temporary PREFIX) and checks the
# result; see the head of the script for what it proves. Needs mandoc,
# systemd-analyze, redis-server and redis-cli.
check-install: all
	MAKE="$(MAKE)" CC="$(CC)" LDCONFIG=: tests/install/check-install.sh
